//! Server-sent events: a contact's status, sent whenever the centre publishes a snapshot
//! in which that contact changed (version, position, estimate or state). No polling: the
//! stream waits on the contact's bell in the read view.
//!
//! The event bytes are written here rather than through axum's `Sse`/`Event`: one buffer per
//! event holding `event: status\ndata: {json}\n\n`, the JSON serialized straight into it
//! ([`PublicStatus`]). With 10,000 live pages one change means 10,000 events, so the per-event
//! cost is the fan-out's latency.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::centre::timeline::Timeline;
use crate::centre::{ContactId, ContactState, ContactStatus, ViewHandle, WaitEstimate};

use super::public::PublicStatus;
use super::zone::Zone;
use super::{AppState, Client, api, pages};

/// A comment line this often keeps proxies from closing a quiet stream (axum's default).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const EVENT_HEAD: &[u8] = b"event: status\ndata: ";
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// What, when it changes, is worth an event (the last: how many steps the story has had).
type Key = (u64, Option<u32>, u32, WaitEstimate, ContactState, usize);

fn key(s: &ContactStatus, t: Option<&Timeline>) -> Key {
    let steps = t.map_or(0, |t| t.entries().len() + t.skipped() as usize);
    (s.version, s.position, s.ahead, s.estimate, s.state, steps)
}

/// One `status` event. Compact JSON has no raw line breaks (serde_json escapes them in
/// strings), so it is one `data:` line.
pub fn event(status: &ContactStatus, timeline: Option<&Timeline>, zone: &Zone) -> Bytes {
    let mut out = Vec::with_capacity(super::public::TYPICAL_BYTES + EVENT_HEAD.len() + 2);
    out.extend_from_slice(EVENT_HEAD);
    PublicStatus::new_in(status, zone)
        .with_story(timeline, zone)
        .write_into(&mut out);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A chat contact's messages on its stream: `message` events for every committed message
/// after `after` (the last the page shows), each read once from the view when the bell
/// rings — the cost of a message is that message. Holds the visitor's presence.
pub struct ChatFeed {
    pub after: u32,
    pub snapshots: watch::Receiver<std::sync::Arc<crate::centre::Snapshot>>,
    /// The agent's own stream shows "You" for the agent's messages.
    pub for_agent: bool,
    pub(crate) _here: Option<super::chat::Here>,
}

const MESSAGE_HEAD: &[u8] = b"event: message\ndata: ";

/// `message` events for what the view holds after `feed.after`, moving it on.
fn messages(
    view: &ViewHandle,
    id: &ContactId,
    feed: &mut ChatFeed,
    zone: &Zone,
    out: &mut Vec<u8>,
) {
    let Some((new, _)) = view.messages(
        id,
        feed.after,
        crate::centre::limits::TRANSCRIPT_MAX_MESSAGES as usize,
    ) else {
        return;
    };
    if new.is_empty() {
        return;
    }
    let snapshot = feed.snapshots.borrow().clone();
    for m in &new {
        out.extend_from_slice(MESSAGE_HEAD);
        out.extend_from_slice(
            super::chat::message_json(m, &snapshot, zone, feed.for_agent)
                .to_string()
                .as_bytes(),
        );
        out.extend_from_slice(b"\n\n");
        feed.after = m.seq;
    }
}

/// The first event now, then one per change; ends when the contact is forgotten or the
/// centre stops. Woken only by the contact's own bell (see `centre::ViewHandle::subscribe`):
/// each wake compiles this one status, so a change costs the streams it concerns. A comment
/// goes out every [`KEEP_ALIVE`], events or not: one timer per stream for its whole life,
/// not one set and cancelled per event.
pub fn status_stream(
    first: ContactStatus,
    view: ViewHandle,
    bell: watch::Receiver<u64>,
    zone: Zone,
    mut chat: Option<ChatFeed>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let id: ContactId = first.id.clone();
    let story = view.timeline(&id);
    let mut first_event = event(&first, story.as_deref(), &zone).to_vec();
    if let Some(feed) = &mut chat {
        messages(&view, &id, feed, &zone, &mut first_event);
    }
    let first_event = Bytes::from(first_event);
    let ping = Box::pin(tokio::time::sleep(KEEP_ALIVE));
    let rest = stream::unfold(
        (
            bell,
            key(&first, story.as_deref()),
            (id, zone, chat),
            view,
            ping,
        ),
        |(mut bell, mut last, (id, zone, mut chat), view, mut ping)| async move {
            loop {
                tokio::select! {
                    biased;
                    rung = bell.changed() => rung.ok()?,
                    () = ping.as_mut() => {
                        ping.as_mut().reset(tokio::time::Instant::now() + KEEP_ALIVE);
                        let comment = Bytes::from_static(KEEP_ALIVE_COMMENT);
                        return Some((Ok(comment), (bell, last, (id, zone, chat), view, ping)));
                    }
                }
                let current = view.status(&id)?;
                let story = view.timeline(&id);
                let k = key(&current, story.as_deref());
                let mut out = Vec::new();
                if k != last {
                    last = k;
                    out = event(&current, story.as_deref(), &zone).to_vec();
                }
                if let Some(feed) = &mut chat {
                    messages(&view, &id, feed, &zone, &mut out);
                }
                if !out.is_empty() {
                    let bytes = Bytes::from(out);
                    return Some((Ok(bytes), (bell, last, (id, zone, chat), view, ping)));
                }
            }
        },
    );
    futures_util::StreamExt::chain(stream::once(async move { Ok(first_event) }), rest)
}

/// `after=N` in a query: the last message the page shows.
fn after_in(query: Option<&str>) -> Option<u32> {
    query?
        .split('&')
        .find_map(|p| p.strip_prefix("after="))
        .and_then(|n| n.parse().ok())
}

async fn sse(state: &AppState, status: ContactStatus, zone: Zone, query: Option<&str>) -> Response {
    let view = state.web.centre.view().clone();
    let Some(bell) = view.subscribe(&status.id) else {
        return api::AppError::NotFound.into_response();
    };
    // An open stream of a chat contact is its visitor being there.
    let here = super::chat::here(state, &status, true).await;
    // A change committed between the lookup and the subscription is not missed: send the
    // status as it is now first.
    let status = view.status(&status.id).unwrap_or(status);
    let after = after_in(query);
    let chat = (status.media.is_text() || after.is_some()).then(|| ChatFeed {
        after: after.unwrap_or(0),
        snapshots: state.web.centre.snapshots(),
        for_agent: false,
        _here: here,
    });
    let stop = state.web.shutdown.clone().cancelled_owned();
    let stream =
        futures_util::StreamExt::take_until(status_stream(status, view, bell, zone, chat), stop);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

pub(crate) async fn page_events(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let session = super::Session::from_headers(&headers);
    let token = super::link::token_in(query.as_deref());
    match pages::find(&state, ip, session.as_deref(), token, &raw).await {
        Ok((_, status)) => {
            let zone = Zone::of_request(&headers, &state.web.zone);
            sse(&state, status, zone, query.as_deref()).await
        }
        Err(r) => r,
    }
}

pub(crate) async fn api_events(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let session = super::Session::from_headers(&headers);
    let token = super::link::token_in(query.as_deref());
    match api::find(&state, ip, session.as_deref(), token, &raw).await {
        Ok((_, status)) => {
            let zone = Zone::of_request(&headers, &state.web.zone);
            sse(&state, status, zone, query.as_deref()).await
        }
        Err(e) => e.into_response(),
    }
}
