//! Web chat for visitors: the start page (`/chat`, and `/chat/<queue>` for an operator's
//! site), the message box of a chat contact's page (`POST /c/<number>/chat`), the
//! transcript shown on the page, a flood limit per contact, and presence.
//!
//! Live both ways over what the page already uses: server-sent events carry the agent's
//! messages (the contact's `status` stream gains `message` events, see `sse`) and a POST
//! carries the visitor's. SSE over WebSocket because the page already holds that stream
//! (one connection per page, not two), it goes through every proxy that serves the page,
//! it reconnects by itself, and the other direction is a form POST that works without
//! JavaScript too (then the page's own reload shows the answers).
//!
//! Presence: an open event stream, a page load or a message counts as the visitor being
//! there. With none for `chat_idle_secs` the contact is reported away (`LostCall::Idle`:
//! the place is kept, it is not offered); a page or stream coming back by its number puts
//! it back (`session_back`).
//!
//! Must not import `sip` or `media`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::centre::limits::{CHAT_MAX_CHARS, NAME_MAX_CHARS};
use crate::centre::{
    Author, ChatMessage, ContactId, ContactState, ContactStatus, LostCall, MediaType, NewContact,
    PostError, QueueId, Snapshot,
};

use super::pages::{forbidden, not_found, render, unavailable};
use super::zone::Zone;
use super::{AppState, Client, Session, csrf};

/// Messages shown on a page as it is written; older ones are in the store (and the agent
/// sees the whole conversation as it goes).
pub const PAGE_MESSAGES: usize = 100;

/// A visitor's messages: a burst of this many, then one per [`FLOOD_REFILL`]. A person
/// typing never meets it; a script looping on the form does, at once (429), and only for
/// their own contact.
const FLOOD_BURST: f64 = 5.0;
const FLOOD_REFILL: Duration = Duration::from_secs(1);
/// Contacts whose bucket is remembered; past it, the full (idle) buckets are forgotten.
const FLOOD_TRACKED: usize = 10_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat", get(start_page).post(start))
        .route("/chat/{queue}", get(start_page_for))
        .route("/c/{id}/chat", post(say))
        .route("/c/{id}/chat/leave", post(leave))
}

// --- presence ---------------------------------------------------------------------------

/// Who is there: per chat contact, its open streams and when it was last seen. One
/// waiting task per absent contact checks it once `chat_idle_secs` have passed.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    seen: Mutex<HashMap<ContactId, Seen>>,
}

#[derive(Debug)]
struct Seen {
    streams: u32,
    last: Instant,
    /// A task is already waiting to check this contact.
    watched: bool,
}

/// An open event stream of a chat contact; dropping it (the page closed) starts the clock.
pub(crate) struct Here {
    state: AppState,
    id: ContactId,
}

impl Drop for Here {
    fn drop(&mut self) {
        let watch = {
            let mut seen = self.state.presence.lock();
            match seen.get_mut(&self.id) {
                Some(s) => {
                    s.streams = s.streams.saturating_sub(1);
                    s.last = Instant::now();
                    s.streams == 0 && !std::mem::replace(&mut s.watched, true)
                }
                None => false,
            }
        };
        if watch {
            spawn_watch(self.state.clone(), self.id.clone());
        }
    }
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContactId, Seen>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The visitor of `status` is here (a page, a message) — and, with `stream`, stays while
/// the returned guard lives. A visitor reported away is put back in their place.
pub(crate) async fn here(state: &AppState, status: &ContactStatus, stream: bool) -> Option<Here> {
    if status.media != MediaType::Chat || !status.state.is_live() {
        return None;
    }
    let watch = {
        let mut seen = state.presence.lock();
        let s = seen.entry(status.id.clone()).or_insert(Seen {
            streams: 0,
            last: Instant::now(),
            watched: false,
        });
        s.last = Instant::now();
        if stream {
            s.streams += 1;
        }
        s.streams == 0 && !std::mem::replace(&mut s.watched, true)
    };
    if watch {
        spawn_watch(state.clone(), status.id.clone());
    }
    if matches!(status.state, ContactState::Disconnected { .. })
        && let Err(e) = state.web.centre.session_back(status.id.clone()).await
    {
        tracing::info!(contact = %status.id.redacted(), error = %e, "visitor back, not stored");
    }
    stream.then(|| Here {
        state: state.clone(),
        id: status.id.clone(),
    })
}

/// Waits until the contact has had no stream and no visit for `chat_idle_secs`, then
/// reports it away; a visit meanwhile pushes the check back.
fn spawn_watch(state: AppState, id: ContactId) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let idle = Duration::from_secs(state.web.chat_idle_secs.max(1));
        let mut wait = idle;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.web.shutdown.cancelled() => return,
            }
            let mut seen = state.presence.lock();
            let Some(s) = seen.get_mut(&id) else { return };
            if s.streams > 0 {
                s.watched = false;
                return;
            }
            let gone = s.last.elapsed();
            if gone < idle {
                wait = idle - gone;
                continue;
            }
            seen.remove(&id);
            break;
        }
        match state.web.centre.call_lost(id.clone(), LostCall::Idle).await {
            Ok(()) => tracing::info!(contact = %id.redacted(), "chat visitor away"),
            Err(e) => tracing::debug!(contact = %id.redacted(), error = %e, "chat visitor away"),
        }
    });
}

// --- flood limit ------------------------------------------------------------------------

#[derive(Debug, Default)]
pub(crate) struct Floods {
    buckets: Mutex<HashMap<ContactId, (f64, Instant)>>,
}

impl Floods {
    /// Takes one message from the contact's bucket, or says how long to wait.
    fn take(&self, id: &ContactId, now: Instant) -> Result<(), Duration> {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let refill = |(tokens, at): (f64, Instant)| {
            let grown =
                now.saturating_duration_since(at).as_secs_f64() / FLOOD_REFILL.as_secs_f64();
            (f64::min(FLOOD_BURST, tokens + grown), now)
        };
        if b.len() >= FLOOD_TRACKED && !b.contains_key(id) {
            b.retain(|_, v| refill(*v).0 < FLOOD_BURST);
        }
        let (tokens, _) = refill(b.get(id).copied().unwrap_or((FLOOD_BURST, now)));
        if tokens < 1.0 {
            b.insert(id.clone(), (tokens, now));
            return Err(FLOOD_REFILL.mul_f64(1.0 - tokens));
        }
        b.insert(id.clone(), (tokens - 1.0, now));
        Ok(())
    }
}

// --- what the page shows ----------------------------------------------------------------

/// One message as a page shows it (escaped by the template; `text` is the writer's own).
pub(crate) struct ChatLine {
    pub seq: u32,
    /// "customer", "agent" or "system": a CSS class.
    pub class: &'static str,
    pub who: String,
    pub time: String,
    pub text: String,
}

/// The chat part of a contact's page.
pub(crate) struct ChatSection {
    pub messages: Vec<ChatLine>,
    pub last_seq: u32,
    /// The visitor may write (a live chat, not replaced by a call-back or an email).
    pub open: bool,
    pub max: usize,
    pub error: Option<String>,
    /// What the visitor had typed, given back with `error`.
    pub text: String,
}

/// The agent's name as the visitor sees it.
pub(crate) fn agent_name(snapshot: &Snapshot, id: &crate::centre::AgentId) -> String {
    snapshot
        .agents
        .iter()
        .find(|a| &a.id == id)
        .map_or_else(|| id.to_string(), |a| a.name.clone())
}

/// A message for a page: for the customer's page (`for_agent` false) "You" / the agent's
/// name; for the agent's, the other way round.
pub(crate) fn line(m: &ChatMessage, snapshot: &Snapshot, zone: &Zone, for_agent: bool) -> ChatLine {
    let (class, who) = match &m.author {
        Author::Customer => (
            "customer",
            if for_agent {
                "Customer".to_owned()
            } else {
                "You".to_owned()
            },
        ),
        Author::Agent { id } => (
            "agent",
            if for_agent {
                "You".to_owned()
            } else {
                agent_name(snapshot, id)
            },
        ),
        Author::System => ("system", "Notice".to_owned()),
    };
    ChatLine {
        seq: m.seq,
        class,
        who,
        time: zone.time(m.at),
        text: m.text.clone(),
    }
}

/// The JSON of one message for a live page (SSE `message` event, the POST's answer).
pub(crate) fn message_json(
    m: &ChatMessage,
    snapshot: &Snapshot,
    zone: &Zone,
    for_agent: bool,
) -> serde_json::Value {
    let l = line(m, snapshot, zone, for_agent);
    json!({
        "seq": l.seq,
        "author": l.class,
        "who": l.who,
        "time": l.time,
        "text": l.text,
    })
}

/// The chat section of `status`'s page, or `None` for a contact that never chatted.
pub(crate) async fn section(
    state: &AppState,
    status: &ContactStatus,
    zone: &Zone,
) -> Option<ChatSection> {
    // The latest only: a page costs what it shows, not the whole conversation.
    let centre = &state.web.centre;
    let (_, last) = centre
        .transcript(status.id.clone(), u32::MAX, 0)
        .await
        .unwrap_or_default();
    let from = last.saturating_sub(PAGE_MESSAGES as u32);
    let (messages, last) = centre
        .transcript(status.id.clone(), from, PAGE_MESSAGES)
        .await
        .unwrap_or_default();
    let open = status.media == MediaType::Chat && status.state.is_live();
    if !open && messages.is_empty() && status.media != MediaType::Chat {
        return None;
    }
    let snapshot = state.web.centre.snapshots().borrow().clone();
    Some(ChatSection {
        messages: messages
            .iter()
            .map(|m| line(m, &snapshot, zone, false))
            .collect(),
        last_seq: last,
        open,
        max: CHAT_MAX_CHARS,
        error: None,
        text: String::new(),
    })
}

// --- start page -------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "chat_start.html")]
struct StartPage {
    csrf: String,
    queues: Vec<QueueChoice>,
    name: String,
    text: String,
    max: usize,
    name_max: usize,
    error: Option<String>,
}

struct QueueChoice {
    id: String,
    name: String,
    selected: bool,
}

fn queues(state: &AppState, chosen: Option<&str>) -> Vec<QueueChoice> {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    snapshot
        .queues
        .iter()
        .filter(|q| !q.remote)
        .enumerate()
        .map(|(i, q)| QueueChoice {
            id: q.id.0.clone(),
            name: q.name.clone(),
            selected: chosen.map_or(i == 0, |c| c == q.id.as_str()),
        })
        .collect()
}

fn start_form(
    state: &AppState,
    session: &str,
    chosen: Option<&str>,
    status: StatusCode,
    error: Option<String>,
    (name, text): (String, String),
) -> Response {
    render(
        status,
        &StartPage {
            csrf: csrf::token(&state.web.secret, session, ""),
            queues: queues(state, chosen),
            name,
            text,
            max: CHAT_MAX_CHARS,
            name_max: NAME_MAX_CHARS,
            error,
        },
    )
}

async fn start_page(State(state): State<AppState>, session: Session) -> Response {
    let page = start_form(
        &state,
        &session.id,
        None,
        StatusCode::OK,
        None,
        Default::default(),
    );
    session.apply(page)
}

async fn start_page_for(
    State(state): State<AppState>,
    session: Session,
    Path(queue): Path<String>,
) -> Response {
    if !queues(&state, None).iter().any(|q| q.id == queue) {
        return not_found();
    }
    let page = start_form(
        &state,
        &session.id,
        Some(&queue),
        StatusCode::OK,
        None,
        Default::default(),
    );
    session.apply(page)
}

#[derive(Deserialize)]
struct StartForm {
    queue: Option<String>,
    name: Option<String>,
    text: Option<String>,
    csrf: Option<String>,
}

async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return super::pages::bad_form();
    };
    let Some(session) = Session::from_headers(&headers) else {
        return forbidden();
    };
    if !csrf::verify(
        &state.web.secret,
        &session,
        "",
        form.csrf.as_deref().unwrap_or(""),
    ) {
        return forbidden();
    }
    let queue = form.queue.unwrap_or_default();
    let name: String = form.name.unwrap_or_default().trim().to_owned();
    let text = form.text.unwrap_or_default();
    let again = |status, error: String| {
        let kept = (
            name.chars().take(NAME_MAX_CHARS).collect(),
            text.chars().take(CHAT_MAX_CHARS * 2).collect(),
        );
        start_form(&state, &session, Some(&queue), status, Some(error), kept)
    };
    if !queues(&state, None).iter().any(|q| q.id == queue) {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please choose a queue from the list.".to_owned(),
        );
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Your name can have at most {NAME_MAX_CHARS} characters."),
        );
    }
    let first = if text.trim().is_empty() {
        None
    } else {
        match crate::centre::chat::check_chat_text(&text) {
            Ok(t) => Some(t),
            Err(e) => return again(StatusCode::UNPROCESSABLE_ENTITY, post_error_words(&e)),
        }
    };
    let caller = if name.is_empty() {
        "Web visitor".to_owned()
    } else {
        name.clone()
    };
    let handle: u64 = rand::random();
    let admitted = state
        .web
        .centre
        .admit(NewContact {
            queue: QueueId(queue.clone()),
            media: MediaType::Chat,
            caller,
            call_ref: format!("web-chat-{handle:016x}"),
        })
        .await;
    let status = match admitted {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "chat not admitted");
            return unavailable();
        }
    };
    state.prove(&session, &status.id);
    // Starting counts as being there: the clock runs from now if no page follows.
    let _ = here(&state, &status, false).await;
    tracing::info!(contact = %status.id.redacted(), queue = %queue, "web chat started");
    if let Some(text) = first
        && let Err(e) = state
            .web
            .centre
            .post(status.id.clone(), Author::Customer, text)
            .await
    {
        // The chat stands; the page says the first message did not go.
        tracing::warn!(contact = %status.id.redacted(), error = %e, "first chat message not stored");
    }
    Redirect::to(&format!("/c/{}", status.id)).into_response()
}

// --- the visitor's messages ------------------------------------------------------------

/// In words, why a message was refused.
pub(crate) fn post_error_words(e: &PostError) -> String {
    match e {
        PostError::NotFound => "We could not find this chat.".to_owned(),
        PostError::Ended => "This chat has ended: your message was not sent.".to_owned(),
        PostError::NotText => {
            "This contact is no longer a chat: your message was not sent.".to_owned()
        }
        PostError::NotHolder(_) => "You are not connected with this chat.".to_owned(),
        PostError::Empty => "Please type a message.".to_owned(),
        PostError::TooLong { max, len } => format!(
            "Your message has {len} characters; at most {max} fit in one. Nothing was sent: shorten it or send it in parts."
        ),
        PostError::TranscriptFull => "This chat is too long to take more messages.".to_owned(),
        PostError::Storage(_) | PostError::ShuttingDown => {
            "We could not send that just now. Nothing was sent: please try again in a moment."
                .to_owned()
        }
    }
}

fn post_status(e: &PostError) -> StatusCode {
    match e {
        PostError::NotFound => StatusCode::NOT_FOUND,
        PostError::Ended | PostError::NotText | PostError::NotHolder(_) => StatusCode::CONFLICT,
        PostError::Empty | PostError::TooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        PostError::TranscriptFull => StatusCode::TOO_MANY_REQUESTS,
        PostError::Storage(_) | PostError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Deserialize)]
struct SayForm {
    text: Option<String>,
    csrf: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// A refusal: JSON `{error}` for the page's script; for a browser without it, the page
/// again with the error and what was typed (nothing lost).
async fn refused(
    state: &AppState,
    status: &ContactStatus,
    headers: &HeaderMap,
    code: StatusCode,
    error: String,
    typed: String,
    retry: Option<u64>,
) -> Response {
    let mut r = if wants_json(headers) {
        (
            code,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json!({ "error": error }).to_string(),
        )
            .into_response()
    } else {
        let session = Session::from_headers(headers).unwrap_or_default();
        super::pages::chat_refused(state, &session, status, headers, code, error, typed).await
    };
    if let Some(secs) = retry {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

async fn say(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<SayForm>, FormRejection>,
) -> Response {
    let session = Session::from_headers(&headers);
    let (id, status) = match super::pages::find(&state, ip, session.as_deref(), None, &raw).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let Some(session) = session else {
        return forbidden();
    };
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let error = format!(
                "Your message is longer than we accept (at most {CHAT_MAX_CHARS} characters). Nothing was sent."
            );
            return refused(
                &state,
                &status,
                &headers,
                StatusCode::PAYLOAD_TOO_LARGE,
                error,
                String::new(),
                None,
            )
            .await;
        }
        Err(_) => return super::pages::bad_form(),
    };
    if !csrf::verify(
        &state.web.secret,
        &session,
        id.as_str(),
        form.csrf.as_deref().unwrap_or(""),
    ) {
        tracing::info!(contact = %id.redacted(), "refused: missing or wrong CSRF token");
        return forbidden();
    }
    let text = form.text.unwrap_or_default();
    if let Err(wait) = state.floods.take(&id, Instant::now()) {
        let secs = wait.as_secs().max(1);
        let error = format!(
            "You are sending messages faster than we take them. Wait {secs} s and send again."
        );
        return refused(
            &state,
            &status,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            error,
            text,
            Some(secs),
        )
        .await;
    }
    let _ = here(&state, &status, false).await;
    match state
        .web
        .centre
        .post(id.clone(), Author::Customer, text.clone())
        .await
    {
        Ok(m) if wants_json(&headers) => {
            let snapshot = state.web.centre.snapshots().borrow().clone();
            let zone = Zone::of_request(&headers, &state.web.zone);
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                message_json(&m, &snapshot, &zone, false).to_string(),
            )
                .into_response()
        }
        Ok(_) => Redirect::to(&format!("/c/{id}#chat")).into_response(),
        Err(e) => {
            let code = post_status(&e);
            refused(
                &state,
                &status,
                &headers,
                code,
                post_error_words(&e),
                text,
                None,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct LeaveForm {
    csrf: Option<String>,
}

/// The visitor ends the chat: abandoned while waiting, completed once an agent had it
/// (the agent then wraps up).
async fn leave(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<LeaveForm>, FormRejection>,
) -> Response {
    let session = Session::from_headers(&headers);
    let (id, status) = match super::pages::find(&state, ip, session.as_deref(), None, &raw).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let (Some(session), Ok(Form(form))) = (session, form) else {
        return forbidden();
    };
    if !csrf::verify(
        &state.web.secret,
        &session,
        id.as_str(),
        form.csrf.as_deref().unwrap_or(""),
    ) {
        return forbidden();
    }
    if status.media != MediaType::Chat || !status.state.is_live() {
        return Redirect::to(&format!("/c/{id}")).into_response();
    }
    let reason = if status.connected {
        crate::centre::EndReason::Completed
    } else {
        crate::centre::EndReason::Abandoned
    };
    match state.web.centre.end(id.clone(), reason).await {
        Ok(()) | Err(crate::centre::CentreError::AlreadyEnded) => {
            tracing::info!(contact = %id.redacted(), "visitor left the chat");
            Redirect::to(&format!("/c/{id}")).into_response()
        }
        Err(e) => {
            tracing::warn!(contact = %id.redacted(), error = %e, "leaving the chat not stored");
            unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_after_the_burst_and_refills_for_one_contact_only() {
        let floods = Floods::default();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let (a, b) = (ContactId::random(&mut rng), ContactId::random(&mut rng));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(floods.take(&a, t0).is_ok());
        }
        assert!(floods.take(&a, t0).is_err(), "the sixth at once is refused");
        assert!(
            floods.take(&b, t0).is_ok(),
            "another visitor is not concerned"
        );
        assert!(floods.take(&a, t0 + Duration::from_millis(1100)).is_ok());
        assert!(floods.take(&a, t0 + Duration::from_millis(1200)).is_err());
    }
}
