//! Call control: turns SIP calls into contacts and carries out what the centre decides.
//!
//! One file for now (~850 production lines): the per-call flow is one async function whose
//! parts share its locals; issue 9 turns it into a sans-IO `CallFlow` core with a thin
//! driver, which is where it splits.
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
    AgentId, CentreError, CentreHandle, ContactId, ContactStatus, Effect, EndReason, Farewell,
    LostCall, MediaType, NewContact, QueueId, WaitEstimate,
};
use crate::config::Config;
use crate::media::announcer::{AnnouncerHandle, MediaEvent, StreamHandle, StreamSpec};
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
    /// Signs the link in the Call-Info header (`web::link`).
    pub link_key: crate::web::link::LinkKey,
}

mod outbound;

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

/// Routes UA events and centre effects to per-call tasks until cancelled.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<UaEvent>,
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
                        let task = call_task(*ic, tx, rx, deps.clone(), routes.clone(), token.clone());
                        tracker.spawn(task.instrument(span));
                    }
                    UaEvent::Registered { user, contact, expires } => {
                        tracing::info!(agent = %user, contact = ?contact, expires, "agent phone registration");
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
            _ = token.cancelled() => break,
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
        UaEvent::Registered { .. } => return None,
    })
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

/// Where a hand-off sends the caller.
enum HandoffTo {
    /// An agent the centre offered this contact to.
    Agent(AgentId),
    /// A remote queue (another site) the caller chose on the web page.
    Site,
}

/// A REFER of this call in progress (RFC 3515 with the NOTIFY sipfrag progress).
struct Handoff {
    to: HandoffTo,
    /// From the configuration (the agent's URI or REGISTER binding, or the remote queue's
    /// URI): never an address taken from a request.
    uri: String,
    /// Sent once the "connecting" prompt has played, or when `due` comes first.
    referred: bool,
    /// Before the REFER: when to send it at the latest (the prompt may stall). After: no
    /// final result by then counts as "no answer".
    due: tokio::time::Instant,
    /// A NOTIFY reported the target ringing (18x): the caller's phone did reach it, so a
    /// failure from then on is the target's (no answer, busy), not the caller's.
    rang: bool,
}

/// Whose side a failed transfer failed on, from what the gateway observed. The agent's
/// phone is never seen directly on a REFER (the caller's phone calls it), so only the
/// caller's NOTIFYs from the dialog we REFERred say it rang; without that, a refused,
/// unanswered or failed REFER is the caller's (their phone did not do it, or says so
/// without having tried): the agent is not put "not ready" for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Agent,
    Caller,
}

/// The side and the words for a REFER whose final NOTIFY reported `status` (a failure),
/// after the target was (`rang`) or was not seen ringing.
fn refer_failure(status: u16, rang: bool) -> (Side, String) {
    let why = match status {
        408 | 480 | 487 => "no answer".to_owned(),
        486 | 600 => "busy".to_owned(),
        _ => format!("transfer failed ({status})"),
    };
    if rang {
        (Side::Agent, why)
    } else {
        (
            Side::Caller,
            format!("{why}, reported before the agent's phone rang"),
        )
    }
}

impl Handoff {
    fn new(to: HandoffTo, uri: String) -> Handoff {
        Handoff {
            to,
            uri,
            referred: false,
            due: tokio::time::Instant::now() + Duration::from_secs(8),
            rang: false,
        }
    }

    fn due(&self) -> tokio::time::Instant {
        self.due
    }
}

/// A final answer to an in-dialog request that says the dialog no longer exists at the
/// far end: 408 (nothing answered: Timer F) or 481 (RFC 5057 §5.1).
fn dialog_gone(status: u16) -> bool {
    matches!(status, 408 | 481)
}

/// REFER answered this way means the caller's equipment does not do transfers at all
/// (method not allowed / not implemented / extension not supported): a different path
/// (bridging) is taken instead of counting it against the agent.
fn refuses_refer(status: u16) -> bool {
    matches!(status, 405 | 420 | 501)
}

async fn call_task(
    ic: IncomingCall,
    tx: mpsc::UnboundedSender<CallMsg>,
    mut rx: mpsc::UnboundedReceiver<CallMsg>,
    deps: Deps,
    routes: Routes,
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
        .admit_call(NewContact {
            queue: QueueId(queue.id.clone()),
            media,
            caller: ic.caller.clone(),
            call_ref: ic.dialog.to_string(),
        })
        .await;
    let (status, rejoined) = match admitted {
        Ok(a) => (a.status, a.rejoined),
        Err(e) => {
            let (code, headers) = match e {
                CentreError::UnknownQueue(_) => (404, vec![]),
                // A store that cannot write now (busy, full) is a passing condition for
                // the caller: try again later, never a 500.
                CentreError::Full | CentreError::ShuttingDown | CentreError::Storage(_) => {
                    (503, retry_after(&deps))
                }
                _ => (500, vec![]),
            };
            tracing::warn!(error = %e, status = code, "contact not admitted");
            deps.sip.reject(key, code, headers).await;
            return wait_ended(&mut rx).await;
        }
    };
    let id = status.id.clone();
    // `rejoined`: a caller who rang again after a restart and got their old contact back
    // (matched on the calling number), as the centre says — never guessed from the
    // contact's version, which routing in the same batch also bumps. Calling numbers can
    // be spoofed, so such a call is never told the contact number (no Call-Info, no spoken
    // number, `*` repeats the position): the secret stays with whoever heard it first.
    // Every other caller is told it, whether or not an agent is ready at this moment.
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
    // The link carries its token: opening it never spends the guessing budget.
    let call_info = format!(
        "<{base}/c/{id}?k={}>;purpose=info",
        deps.link_key.token(&id)
    );
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
    // Media waits for the ACK (below): an INVITE from a spoofed address must not aim a
    // stream at someone else (50 packets a second until Timer H, ~275 KB for ~400 bytes).
    let started = deps
        .announcer
        .start(StreamSpec {
            socket,
            remote: UNSPECIFIED,
            law: answer.law,
            pt: answer.pt,
            telephone_event_pt: answer.telephone_event_pt,
            prompts: prompts.clone(),
            silence_timeout: (deps.config.calls.rtp_timeout_secs > 0)
                .then(|| Duration::from_secs(u64::from(deps.config.calls.rtp_timeout_secs))),
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
    // Played, and the stream aimed at the caller, once the answer is acknowledged.
    let mut intro = Some(intro);
    // Whether the caller has heard their contact number to the end (a rejoined caller is
    // never told it) or shown they have it (used the page). Until then an offer or a
    // transfer that comes first is announced after it, never instead of it.
    let mut number_told = rejoined;

    // Music is interrupted every `announce_every_secs` of music: the clock starts when the
    // spoken part ends, so a long intro or a `*` replay never gets an update queued behind it.
    let every = Duration::from_secs(queue.announce_every_secs);
    let mut next_update: Option<tokio::time::Instant> = None;
    let mut media_open = true;
    // Set once the centre replaced this call by a call-back/email/form: the deadline for
    // the farewell prompt, after which the call is ended regardless.
    let mut farewell: Option<tokio::time::Instant> = None;
    // A REFER to an agent or another site in progress.
    let mut handoff: Option<Handoff> = None;
    // Our liveness probe (in-dialog OPTIONS) in flight, and what made us ask.
    let mut probe: Option<LostCall> = None;
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
        let handoff_due = async {
            match handoff.as_ref().map(Handoff::due) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(CallMsg::Sip(UaEvent::Info { content_type, body, .. })) => {
                    if info_is_star(&content_type, &body) && farewell.is_none() && handoff.is_none() {
                        next_update = None;
                        match (rejoined, deps.centre.status(id.clone()).await) {
                            (true, Some(now_status)) => stream.replace(spoken_key(&now_status)),
                            _ => stream.replace(spoken_key(&status)),
                        }
                    }
                }
                Some(CallMsg::Sip(UaEvent::Confirmed(_))) => {
                    if let Some(intro) = intro.take() {
                        stream.set_remote(answer.remote);
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
                    | UaEvent::Registered { .. },
                )) => {}
                Some(CallMsg::Sip(UaEvent::ProbeAnswered { status, .. })) => {
                    let why = probe.take().unwrap_or(LostCall::NoAnswer);
                    if dialog_gone(status) {
                        tracing::info!(status, ?why, "the caller is gone: ending the call");
                        break Outcome::Lost(why);
                    }
                    tracing::debug!(status, "the caller answered the probe: still there");
                }
                Some(CallMsg::Sip(UaEvent::SessionExpired(_))) => {
                    tracing::info!("session timer expired: the caller is gone");
                    break Outcome::Lost(LostCall::SessionExpired);
                }
                Some(CallMsg::Sip(UaEvent::ConnectionLost(_))) => {
                    // Another connection may still reach the phone: ask before ending.
                    probe = Some(LostCall::ConnectionClosed);
                    deps.sip.probe(key).await;
                }
                Some(CallMsg::Sip(UaEvent::ReferFailed { status: code, .. })) if dialog_gone(code) => {
                    // Our REFER got no answer (or "no such call"): the caller's phone is
                    // gone, which is nobody's offer to fail. The contact keeps its place.
                    tracing::info!(status = code, "REFER unanswered: the caller is gone");
                    break Outcome::Lost(LostCall::NoAnswer);
                }
                Some(CallMsg::Sip(UaEvent::ReferFailed { status: code, .. })) => {
                    let Some(h) = handoff.take() else { continue };
                    match h.to {
                        HandoffTo::Agent(agent) if refuses_refer(code) => {
                            // The caller's phone cannot be transferred: keep the call and
                            // join it to the agent by third-party call control instead.
                            tracing::info!(status = code, "caller refuses REFER: bridging to the agent");
                            stream.set_remote(UNSPECIFIED);
                            match outbound::bridge_caller(
                                &deps, &routes, &tx, &mut rx, key, &answer, &agent, &h.uri, &token,
                            )
                            .await
                            {
                                outbound::Bridge::Ended => break Outcome::Bridged,
                                outbound::Bridge::CallerLeft => break Outcome::CallerLeft,
                                outbound::Bridge::Shutdown => break Outcome::Shutdown,
                                outbound::Bridge::NotConnected(why) => {
                                    stream.set_remote(answer.remote);
                                    let _ = deps.centre.offer_failed(agent, why).await;
                                    not_connected(&deps, &id, &stream, &prompts).await;
                                    next_update = None;
                                }
                            }
                        }
                        to => {
                            // The caller's phone refused (or never answered: 408) our
                            // REFER: nothing reached the agent.
                            handoff_failed(&deps, &id, to, Side::Caller, format!("transfer refused by the caller's phone ({code})")).await;
                            not_connected(&deps, &id, &stream, &prompts).await;
                            next_update = None;
                        }
                    }
                }
                Some(CallMsg::Sip(UaEvent::ReferProgress { status: code, done, .. })) => {
                    // Progress counts only for a REFER actually sent (the UA already drops
                    // NOTIFYs for no REFER of ours; this keeps the flow honest on its own).
                    if handoff.as_ref().is_some_and(|h| !h.referred) {
                        continue;
                    }
                    if (180..200).contains(&code) && let Some(h) = handoff.as_mut() {
                        h.rang = true;
                    }
                    if (200..300).contains(&code) {
                        match handoff.take() {
                            Some(h) => {
                                handoff_done(&deps, &id, h.to).await;
                                break Outcome::HandedOff;
                            }
                            None => {
                                // Success after we gave up (the agent answered late): the
                                // caller is with them now, whatever the centre thought.
                                tracing::warn!(status = code, "transfer succeeded after it was given up");
                            }
                        }
                    } else if (code >= 300 || done) && let Some(h) = handoff.take() {
                        let (side, why) = refer_failure(code, h.rang);
                        handoff_failed(&deps, &id, h.to, side, why).await;
                        not_connected(&deps, &id, &stream, &prompts).await;
                        next_update = None;
                    }
                }
                Some(CallMsg::Sip(_)) | None if farewell.is_some() => break Outcome::Substituted,
                Some(CallMsg::Sip(_)) | None => break Outcome::CallerLeft,
                Some(CallMsg::Centre(Effect::Reannounce { .. })) => {
                    // Only the caller's own move from the page re-announces: they have the
                    // number already, so the new position may cut the intro short.
                    if farewell.is_none()
                        && handoff.is_none()
                        && let Some(st) = deps.centre.status(id.clone()).await
                    {
                        number_told = true;
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
                    if farewell.is_some() || handoff.is_some() {
                        // Not the agent's doing: this call is busy being handed over.
                        let _ = deps.centre.offer_failed_by_caller(agent, "the call is already being handed over".into()).await;
                        continue;
                    }
                    match outbound::agent_uri(&deps, &agent, &target).await {
                        Some(uri) => {
                            tracing::info!(agent = %agent, "offering the call to an agent");
                            next_update = None;
                            let said = announce_handoff(&stream, &mut intro, number_told, &prompts, &id, prompts.connecting_agent());
                            let mut h = Handoff::new(HandoffTo::Agent(agent), uri);
                            h.due += said;
                            handoff = Some(h);
                        }
                        None => {
                            tracing::info!(agent = %agent, "agent phone not registered");
                            let _ = deps.centre.offer_failed(agent, "phone not registered".into()).await;
                        }
                    }
                }
                Some(CallMsg::Centre(Effect::Transfer { target, .. })) => {
                    if farewell.is_some() || handoff.is_some() {
                        let _ = deps.centre.transfer_result(id.clone(), false, "the call is already being handed over".into()).await;
                        continue;
                    }
                    tracing::info!("moving the call to another site");
                    next_update = None;
                    let said = announce_handoff(&stream, &mut intro, number_told, &prompts, &id, prompts.moving_call());
                    let mut h = Handoff::new(HandoffTo::Site, target);
                    h.due += said;
                    handoff = Some(h);
                }
            },
            _ = farewell_due => break Outcome::Substituted,
            _ = handoff_due => {
                let referred = handoff.as_ref().is_some_and(|h| h.referred);
                if referred {
                    if let Some(h) = handoff.take() {
                        let (side, why) = if h.rang {
                            (Side::Agent, "no answer".to_owned())
                        } else {
                            (Side::Caller, "no result from the caller's phone".to_owned())
                        };
                        handoff_failed(&deps, &id, h.to, side, why).await;
                        not_connected(&deps, &id, &stream, &prompts).await;
                        next_update = None;
                    }
                } else if let Some(h) = handoff.take() {
                    handoff = send_refer(&deps, &id, key, h, &stream, &prompts).await;
                }
            }
            me = media_events.recv(), if media_open => match me {
                Some(MediaEvent::Dtmf('*')) if farewell.is_none() && handoff.is_none() => {
                    next_update = None;
                    match (rejoined, deps.centre.status(id.clone()).await) {
                        (true, Some(now_status)) => stream.replace(spoken_key(&now_status)),
                        _ => stream.replace(spoken_key(&status)),
                    }
                }
                Some(MediaEvent::Silent) => {
                    // No RTP for `rtp_timeout_secs`: a vanished phone, or one that sends
                    // nothing on hold. An in-dialog OPTIONS tells which.
                    if probe.is_none() {
                        tracing::debug!("no RTP from the caller: probing the dialog");
                        probe = Some(LostCall::NoAnswer);
                        deps.sip.probe(key).await;
                    }
                }
                Some(MediaEvent::SpeechDone) if farewell.is_some() => break Outcome::Substituted,
                Some(MediaEvent::SpeechDone) => {
                    // Everything queued has played, the number included.
                    number_told = true;
                    match handoff.take() {
                        // The "connecting" prompt has played: now the REFER.
                        Some(h) if !h.referred => {
                            handoff = send_refer(&deps, &id, key, h, &stream, &prompts).await;
                        }
                        Some(h) => handoff = Some(h),
                        None => next_update = Some(tokio::time::Instant::now() + every),
                    }
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
                    // No longer waiting (e.g. offered or ended elsewhere): keep the music going.
                    _ => next_update = Some(tokio::time::Instant::now() + every),
                }
            }
            _ = token.cancelled() => break Outcome::Shutdown,
        }
    };
    stream.stop().await;
    match outcome {
        Outcome::CallerLeft => {
            // Hung up while being connected: an abandoned contact. Not the agent's fault:
            // ending the contact frees an agent it was offered to (ready again, keeping
            // their idle time; RINGCANCELED then ABANDON in the queue_log).
            if handoff.take().is_some() {
                tracing::info!(contact = %id.redacted(), "caller hung up while being connected");
            }
            end_contact(&deps, &id).await;
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
    wait_ended(&mut rx).await;
}

/// Pauses an announcement stream (an unspecified remote sends nothing).
const UNSPECIFIED: std::net::SocketAddr =
    std::net::SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Says that the call is being handed over (`words`: "connecting you to an agent" or
/// "moving your call"), after the contact number if the caller has not heard it to the end
/// yet: every new caller is told their number, even one an agent was ready for at once.
/// Before the answer is acknowledged this becomes the intro. Returns how long the number
/// takes to say, by which the REFER's deadline moves.
fn announce_handoff(
    stream: &StreamHandle,
    intro: &mut Option<Vec<Bytes>>,
    number_told: bool,
    prompts: &PromptSet,
    id: &ContactId,
    words: Vec<Bytes>,
) -> Duration {
    let mut clips = if number_told {
        Vec::new()
    } else {
        prompts.contact_number(id.as_str())
    };
    let said = speech_duration(&clips);
    clips.extend(words);
    match intro {
        Some(pending) => *pending = clips,
        None => stream.replace(clips),
    }
    said
}

/// How long `clips` take to play: G.711 is one byte per sample at 8 kHz.
fn speech_duration(clips: &[Bytes]) -> Duration {
    let bytes: usize = clips.iter().map(Bytes::len).sum();
    Duration::from_millis(bytes as u64 / 8)
}

/// Sends the REFER of `h`; `None` (and the failure told to the centre) if it cannot go.
async fn send_refer(
    deps: &Deps,
    id: &ContactId,
    key: CallKey,
    mut h: Handoff,
    stream: &StreamHandle,
    prompts: &PromptSet,
) -> Option<Handoff> {
    match deps.sip.refer(key, h.uri.clone()).await {
        Ok(()) => {
            h.referred = true;
            h.due = tokio::time::Instant::now()
                + Duration::from_secs(u64::from(deps.config.agent_settings.ring_secs))
                + Duration::from_secs(5);
            Some(h)
        }
        Err(e) => {
            tracing::info!(error = %e, "REFER could not be sent");
            handoff_failed(
                deps,
                id,
                h.to,
                Side::Caller,
                format!("transfer not possible: {e}"),
            )
            .await;
            not_connected(deps, id, stream, prompts).await;
            None
        }
    }
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
    fn a_failed_transfer_is_the_agents_only_after_their_phone_rang() {
        // The attack of issue 9: 202, then a NOTIFY "486" without any ringing.
        let (side, why) = refer_failure(486, false);
        assert_eq!(side, Side::Caller);
        assert!(why.starts_with("busy"), "{why}");
        assert_eq!(refer_failure(486, true), (Side::Agent, "busy".to_owned()));
        assert_eq!(
            refer_failure(480, true),
            (Side::Agent, "no answer".to_owned())
        );
        assert_eq!(refer_failure(503, false).0, Side::Caller);
        assert_eq!(refer_failure(503, true).1, "transfer failed (503)");
    }

    #[test]
    fn codec_preference_follows_config() {
        let p = law_preference(&["pcma".into(), "PCMU".into()]);
        assert_eq!(p, vec![Law::Pcma, Law::Pcmu]);
    }
}
