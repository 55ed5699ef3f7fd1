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
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let id: ContactId = first.id.clone();
    let story = view.timeline(&id);
    let first_event = event(&first, story.as_deref(), &zone);
    let ping = Box::pin(tokio::time::sleep(KEEP_ALIVE));
    let rest = stream::unfold(
        (bell, key(&first, story.as_deref()), (id, zone), view, ping),
        |(mut bell, mut last, (id, zone), view, mut ping)| async move {
            loop {
                tokio::select! {
                    biased;
                    rung = bell.changed() => rung.ok()?,
                    () = ping.as_mut() => {
                        ping.as_mut().reset(tokio::time::Instant::now() + KEEP_ALIVE);
                        let comment = Bytes::from_static(KEEP_ALIVE_COMMENT);
                        return Some((Ok(comment), (bell, last, (id, zone), view, ping)));
                    }
                }
                let current = view.status(&id)?;
                let story = view.timeline(&id);
                let k = key(&current, story.as_deref());
                if k != last {
                    last = k;
                    let bytes = event(&current, story.as_deref(), &zone);
                    return Some((Ok(bytes), (bell, last, (id, zone), view, ping)));
                }
            }
        },
    );
    futures_util::StreamExt::chain(stream::once(async move { Ok(first_event) }), rest)
}

fn sse(state: &AppState, status: ContactStatus, zone: Zone) -> Response {
    let view = state.web.centre.view().clone();
    let Some(bell) = view.subscribe(&status.id) else {
        return api::AppError::NotFound.into_response();
    };
    // A change committed between the lookup and the subscription is not missed: send the
    // status as it is now first.
    let status = view.status(&status.id).unwrap_or(status);
    let stop = state.web.shutdown.clone().cancelled_owned();
    let stream = futures_util::StreamExt::take_until(status_stream(status, view, bell, zone), stop);
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
        Ok((_, status)) => sse(&state, status, Zone::of_request(&headers, &state.web.zone)),
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
        Ok((_, status)) => sse(&state, status, Zone::of_request(&headers, &state.web.zone)),
        Err(e) => e.into_response(),
    }
}
