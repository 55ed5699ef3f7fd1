//! Server-sent events: a contact's status, sent whenever the centre publishes a snapshot
//! in which that contact changed (version, position, estimate or state). No polling: the
//! stream waits on the centre's `watch` channel.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::centre::{ContactId, ContactState, ContactStatus, ViewHandle, WaitEstimate};

use super::{AppState, Client, api, pages, words};

/// The status JSON both the API and the events send: the centre's status plus the
/// plain-words texts (`display`) the page shows.
pub fn status_json(status: &ContactStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        // The raw SIP From/P-Asserted-Identity is for the centre and agents, not for
        // whoever holds the contact number.
        map.remove("caller");
        // Phone numbers only as their last digits (see `words::masked`).
        if let Some(n) = status.default_callback_number.as_deref() {
            map.insert("default_callback_number".into(), words::masked(n).into());
        }
        if let Some(crate::centre::Substitute::Callback { number, .. }) = &status.substitute
            && let Some(sub) = map.get_mut("substitute").and_then(|v| v.as_object_mut())
        {
            sub.insert("number".into(), words::masked(number).into());
        }
        map.insert(
            "display".into(),
            serde_json::to_value(words::display(status)).unwrap_or_default(),
        );
    }
    v
}

/// What, when it changes, is worth an event.
type Key = (u64, Option<u32>, u32, WaitEstimate, ContactState);

fn key(s: &ContactStatus) -> Key {
    (s.version, s.position, s.ahead, s.estimate, s.state)
}

fn event(status: &ContactStatus) -> Event {
    Event::default()
        .event("status")
        .data(status_json(status).to_string())
}

/// The first event now, then one per change; ends when the contact is forgotten or the
/// centre stops. Woken only by the contact's own bell (see `centre::ViewHandle::subscribe`):
/// each wake compiles this one status, so a change costs the streams it concerns.
pub fn status_stream(
    first: ContactStatus,
    view: ViewHandle,
    bell: watch::Receiver<u64>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let id: ContactId = first.id.clone();
    let first_event = event(&first);
    let rest = stream::unfold(
        (bell, key(&first), id, view),
        |(mut bell, mut last, id, view)| async move {
            loop {
                bell.changed().await.ok()?;
                let current = view.status(&id)?;
                let k = key(&current);
                if k != last {
                    last = k;
                    return Some((Ok(event(&current)), (bell, last, id, view)));
                }
            }
        },
    );
    futures_util::StreamExt::chain(stream::once(async move { Ok(first_event) }), rest)
}

fn sse(state: &AppState, status: ContactStatus) -> Response {
    let view = state.web.centre.view().clone();
    let Some(bell) = view.subscribe(&status.id) else {
        return api::AppError::NotFound.into_response();
    };
    // A change committed between the lookup and the subscription is not missed: send the
    // status as it is now first.
    let status = view.status(&status.id).unwrap_or(status);
    let stop = state.web.shutdown.clone().cancelled_owned();
    let stream = futures_util::StreamExt::take_until(status_stream(status, view, bell), stop);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

pub(crate) async fn page_events(
    State(state): State<AppState>,
    Client(ip): Client,
    Path(raw): Path<String>,
) -> Response {
    match pages::find(&state, ip, &raw).await {
        Ok((_, status)) => sse(&state, status),
        Err(r) => r,
    }
}

pub(crate) async fn api_events(
    State(state): State<AppState>,
    Client(ip): Client,
    Path(raw): Path<String>,
) -> Response {
    match api::find(&state, ip, &raw).await {
        Ok((_, status)) => sse(&state, status),
        Err(e) => e.into_response(),
    }
}
