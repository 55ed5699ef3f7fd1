//! The caller's pages: entry form, status page with its controls, confirmations, and the
//! plain pages for not found, too many attempts, forbidden and unavailable.
//!
//! Templates only format; everything they show is computed here or in [`words`].
//!
//! One file of ~870 production lines: the routes and `StatusPage::build`, which turns one
//! contact's status into every control and text the page shows, are read together (each
//! route picks a `View` of the same page); the words are already in `words`, the forms'
//! parsing in `forms`, the caller's story in `words` too.

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::centre::{ActionKind, CommandError, CommandRequest, ContactId, ContactStatus};

use super::forms::{self, ActionForm, FieldError};
use super::words::{self, Display};
use super::zone::Zone;
use super::{AppState, Client, Session, csrf, limit};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(entry))
        .route("/lookup", post(lookup))
        .route("/c/{id}", get(status_page))
        .route("/c/{id}/actions", post(action))
        .route("/c/{id}/done/{command_id}", get(done))
        .route("/c/{id}/form/{kind}", get(form_page))
        .route("/c/{id}/events", get(super::sse::page_events))
}

const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");

/// Renders a template with a status code; a template failure is a logged 500.
pub(crate) fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, HTML)], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

fn message(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &MessagePage { title, message })
}

/// The one answer for a number we do not know, whatever the reason (unknown, mistyped,
/// forgotten): the same status and the same bytes.
pub(crate) fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Contact not found",
        "We could not find a contact with that number. Check the number you heard on the phone and enter it again.",
    )
}

pub(crate) async fn fallback() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
    )
}

pub(crate) fn too_many(retry_after: std::time::Duration) -> Response {
    let secs = limit::retry_after_secs(retry_after);
    let mut r = message(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "Too many contact numbers were tried that we could not find. Please wait {secs} seconds and try again."
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

pub(crate) fn forbidden() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Please try again",
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

pub(crate) fn unavailable() -> Response {
    let mut r = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again shortly",
        "We could not do that just now. Nothing was changed. Please try again in a moment.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn form_rejected(rejection: &FormRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too much text",
            "What you sent is longer than we accept (16 KiB in all). Go back, shorten it and try again.",
        )
    } else {
        bad_request()
    }
}

/// A form that did not parse (the chat's too).
pub(crate) fn bad_form() -> Response {
    bad_request()
}

/// A chat message refused, for a browser without JavaScript: the page again, with the
/// error by the message box and what was typed in it (nothing lost).
pub(crate) async fn chat_refused(
    state: &AppState,
    session: &str,
    status: &ContactStatus,
    headers: &HeaderMap,
    code: StatusCode,
    error: String,
    typed: String,
) -> Response {
    let zone = Zone::of_request(headers, &state.web.zone);
    let chat = super::chat::section(state, status, &zone).await;
    let view = View {
        story: story(state, &status.id, &zone).await,
        zone,
        ..View::default()
    };
    let mut page = StatusPage::build(&state.web.secret, session, status, view);
    page.chat = chat.map(|mut c| {
        c.error = Some(error);
        c.text = typed.chars().take(c.max * 2).collect();
        c
    });
    render(code, &page)
}

fn bad_request() -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "Please try again",
        "The form was damaged on its way. Go back, reload the page and try again.",
    )
}

#[derive(Template)]
#[template(path = "entry.html")]
struct EntryPage {
    csrf: String,
    number: String,
    error: Option<String>,
}

async fn entry(State(state): State<AppState>, session: Session) -> Response {
    let page = EntryPage {
        csrf: csrf::token(&state.web.secret, &session.id, ""),
        number: String::new(),
        error: None,
    };
    session.apply(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct LookupForm {
    number: Option<String>,
    csrf: Option<String>,
}

async fn lookup(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    form: Result<Form<LookupForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return form_rejected(&rejection),
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
    if let Err(wait) = state.gate(ip) {
        return too_many(wait);
    }
    let typed = form.number.unwrap_or_default();
    let again = |error: String| {
        let number: String = typed.chars().take(forms::MAX_LOOKUP).collect();
        render(
            StatusCode::OK,
            &EntryPage {
                csrf: csrf::token(&state.web.secret, &session, ""),
                number,
                error: Some(error),
            },
        )
    };
    let id = match (typed.chars().count() <= forms::MAX_LOOKUP).then(|| typed.parse::<ContactId>())
    {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            return again(format!(
                "Please check the number: {e}. A contact number has 12 digits."
            ));
        }
        None => {
            return again("Please check the number: a contact number has 12 digits.".to_owned());
        }
    };
    match state.lookup(ip, &id).await {
        Some(_) => Redirect::to(&format!("/c/{id}")).into_response(),
        None => again(
            "We could not find a contact with that number. Check the number you heard on the phone and enter it again."
                .to_owned(),
        ),
    }
}

/// A path's contact number, checked, and looked up: within the guessing budget, unless the
/// request carries the link's token or comes from a browser that proved the number before
/// (`link`). A browser that finds the contact has proven it from then on.
pub(crate) async fn find(
    state: &AppState,
    ip: std::net::IpAddr,
    session: Option<&str>,
    token: Option<&str>,
    raw: &str,
) -> Result<(ContactId, ContactStatus), Response> {
    let Ok(id) = raw.parse::<ContactId>() else {
        // Malformed: no lookup, but a client over its budget hears that first, as before.
        state.gate(ip).map_err(too_many)?;
        return Err(not_found());
    };
    let status = if state.vouched(session, token, &id) {
        state.web.centre.status(id.clone()).await
    } else {
        state.gate(ip).map_err(too_many)?;
        state.lookup(ip, &id).await
    }
    .ok_or_else(not_found)?;
    if let Some(s) = session {
        state.prove(s, &id);
    }
    Ok((id, status))
}

/// The contact's story in words, times in `zone`.
async fn story(state: &AppState, id: &ContactId, zone: &Zone) -> Vec<words::StoryLine> {
    match state.web.centre.timeline(id.clone()).await {
        Some(t) => words::story(&t, zone),
        None => Vec::new(),
    }
}

async fn status_page(
    State(state): State<AppState>,
    Client(ip): Client,
    session: Session,
    headers: HeaderMap,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let token = super::link::token_in(query.as_deref());
    let (id, status) = match find(&state, ip, Some(session.id.as_str()), token, &raw).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let zone = Zone::of_request(&headers, &state.web.zone);
    let view = View {
        story: story(&state, &id, &zone).await,
        zone,
        updates_off: updates_off(query.as_deref()),
        ..View::default()
    };
    let _ = super::chat::here(&state, &status, false).await;
    let chat = super::chat::section(&state, &status, &view.zone).await;
    let mut page = StatusPage::build(&state.web.secret, &session.id, &status, view);
    page.chat = chat;
    session.apply(render(StatusCode::OK, &page))
}

/// Whether the caller turned the page's own reloading off (`?updates=off`): without
/// JavaScript the status page reloads itself, and WCAG 2.2.1 wants a way to stop that
/// (a screen reader starts over at each reload).
pub(crate) fn updates_off(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == "updates=off"))
}

/// One control on a page of its own: where a browser without JavaScript fills in a form
/// (the status page refreshes itself there, which would wipe what was typed), and the
/// confirmation step of cancelling a call-back for everyone. A control the contact no
/// longer offers sends the caller back to the status page.
async fn form_page(
    State(state): State<AppState>,
    Client(ip): Client,
    session: Session,
    headers: HeaderMap,
    Path((raw, kind)): Path<(String, String)>,
) -> Response {
    let (id, status) = match find(&state, ip, Some(session.id.as_str()), None, &raw).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let Some(kind) = forms::action_kind(&kind) else {
        return not_found();
    };
    if !status.options.contains(&kind) {
        return Redirect::to(&format!("/c/{id}")).into_response();
    }
    let view = View {
        zone: Zone::of_request(&headers, &state.web.zone),
        only: Some(kind),
        ..View::default()
    };
    let page = StatusPage::build(&state.web.secret, &session.id, &status, view);
    session.apply(render(StatusCode::OK, &page))
}

async fn done(
    State(state): State<AppState>,
    Client(ip): Client,
    session: Session,
    headers: HeaderMap,
    Path((raw, command)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let zone = Zone::of_request(&headers, &state.web.zone);
    let (id, status) = match find(&state, ip, Some(session.id.as_str()), None, &raw).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if forms::command_id(&command).is_err() {
        return not_found();
    }
    let snapshot = state.web.centre.snapshots().borrow().clone();
    let text = state.recall(&id, &command).map_or_else(
        || "Your request was carried out.".to_owned(),
        |c| words::confirmation_in(&c, &snapshot, &zone),
    );
    let view = View {
        confirmation: Some(text),
        story: story(&state, &id, &zone).await,
        zone,
        updates_off: updates_off(query.as_deref()),
        ..View::default()
    };
    let page = StatusPage::build(&state.web.secret, &session.id, &status, view);
    session.apply(render(StatusCode::OK, &page))
}

async fn action(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let id = raw.parse::<ContactId>().ok();
    let proven = id
        .as_ref()
        .is_some_and(|id| Session::from_headers(&headers).is_some_and(|s| state.proven(&s, id)));
    if !proven && let Err(wait) = state.gate(ip) {
        return too_many(wait);
    }
    let Some(id) = id else {
        return not_found();
    };
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return form_rejected(&rejection),
    };
    let Some(session) = Session::from_headers(&headers) else {
        return forbidden();
    };
    let token = form.csrf.as_deref().unwrap_or("");
    if !csrf::verify(&state.web.secret, &session, id.as_str(), token) {
        tracing::info!(contact = %id.redacted(), "refused: missing or wrong CSRF token");
        return forbidden();
    }
    let kind = form.action.as_deref().and_then(forms::action_kind);
    let page_zone = Zone::of_request(&headers, &state.web.zone);
    // The times were typed in the zone the form named (its `tz` field, which live.js sets
    // to the browser's), else the page's.
    let typed_zone = Zone::of_form(form.tz.as_deref(), &page_zone);
    let invalid = |state: &AppState, status: &ContactStatus, e: FieldError| {
        let view = View {
            typed: Some((kind, form.clone(), e)),
            // The form comes back on a page of its own, its error summary first.
            only: kind,
            zone: typed_zone.clone(),
            ..View::default()
        };
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &StatusPage::build(&state.web.secret, &session, status, view),
        )
    };
    let parsed = forms::command_id(form.command_id.as_deref().unwrap_or(""))
        .and_then(|cid| Ok((cid, forms::command_from_form(&form, &typed_zone)?)));
    let (command_id, command) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return match state.lookup(ip, &id).await {
                Some(status) => invalid(&state, &status, e),
                None => not_found(),
            };
        }
    };
    let request = CommandRequest {
        id: command_id.clone(),
        contact: id.clone(),
        expected_version: forms::version(&form),
        command,
    };
    match state.web.centre.command(request).await {
        Ok(confirmation) => {
            tracing::info!(contact = %id.redacted(), action = ?kind.map(ActionKind::as_str), "command done");
            state.remember(&id, &command_id, confirmation);
            Redirect::to(&format!("/c/{id}/done/{}", command_id.0)).into_response()
        }
        Err(CommandError::NotFound) => {
            state.failed_lookup(ip);
            not_found()
        }
        Err(CommandError::Invalid { field, problem }) => match state.lookup(ip, &id).await {
            Some(status) => invalid(
                &state,
                &status,
                FieldError::new(field, words::problem(field, problem)),
            ),
            None => not_found(),
        },
        Err(CommandError::NotAllowed { reason, current }) => {
            let view = View {
                notice: Some(format!(
                    "That could not be done: {}. This is your contact as it is now.",
                    words::refusal(reason)
                )),
                zone: page_zone.clone(),
                ..View::default()
            };
            render(
                StatusCode::CONFLICT,
                &StatusPage::build(&state.web.secret, &session, &current, view),
            )
        }
        Err(CommandError::IdReused) => match state.lookup(ip, &id).await {
            Some(status) => {
                let view = View {
                    notice: Some(
                        "This form was already used for something else. Please use the form below again."
                            .to_owned(),
                    ),
                    zone: page_zone.clone(),
                    ..View::default()
                };
                render(
                    StatusCode::CONFLICT,
                    &StatusPage::build(&state.web.secret, &session, &status, view),
                )
            }
            None => not_found(),
        },
        Err(CommandError::Storage(e)) => {
            tracing::warn!(contact = %id.redacted(), error = %e, "command not stored");
            unavailable()
        }
        Err(CommandError::ShuttingDown) => unavailable(),
    }
}

/// What a status page shows besides the status itself.
pub(crate) struct View {
    pub confirmation: Option<String>,
    pub notice: Option<String>,
    /// The form that was sent back (its action, what was typed, what is wrong).
    pub typed: Option<(Option<ActionKind>, ActionForm, FieldError)>,
    /// Times are written (and the forms' times read) in this zone.
    pub zone: Zone,
    /// Only this control, on a page of its own (see `form_page`).
    pub only: Option<ActionKind>,
    /// The caller turned the no-JavaScript reloading off (see `updates_off`).
    pub updates_off: bool,
    /// The contact's story in words (empty: the section waits for the live update).
    pub story: Vec<words::StoryLine>,
}

impl Default for View {
    fn default() -> Self {
        View {
            confirmation: None,
            notice: None,
            typed: None,
            zone: Zone::utc(),
            only: None,
            updates_off: false,
            story: Vec::new(),
        }
    }
}

/// The error summary at the top of a page that sent a form back: the message, and the id
/// of the field it is about (its link moves the focus there).
pub(crate) struct Summary {
    pub target: String,
    pub message: String,
}

/// The element id of `field` in the form of `kind` (as status.html names them).
fn field_id(kind: Option<ActionKind>, field: &str) -> String {
    let prefix = match kind {
        Some(ActionKind::MoveQueue) => return "move-to".to_owned(),
        Some(ActionKind::Callback) => "callback",
        Some(ActionKind::ChangeCallback) => "change-callback",
        Some(ActionKind::Email) => "email",
        Some(ActionKind::WebForm) => "webform",
        Some(ActionKind::Note) => return "note-text".to_owned(),
        Some(ActionKind::CancelCallback) | None => return "controls".to_owned(),
    };
    match (kind, field) {
        (Some(ActionKind::ChangeCallback), "not_before") => "change-not-before".to_owned(),
        (Some(ActionKind::ChangeCallback), "not_after") => "change-not-after".to_owned(),
        (
            _,
            "number" | "not_before" | "not_after" | "subject" | "message" | "reply_to" | "name",
        ) => {
            format!("{prefix}-{}", field.replace('_', "-"))
        }
        _ => format!("{prefix}-form"),
    }
}

pub(crate) struct FieldErr {
    pub field: String,
    pub message: String,
}

pub(crate) struct MoveOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub(crate) struct MoveForm {
    pub targets: Vec<MoveOption>,
    pub error: Option<FieldErr>,
}

#[derive(Default)]
pub(crate) struct CallbackForm {
    pub number: String,
    pub not_before: String,
    pub not_after: String,
    pub error: Option<FieldErr>,
    /// What an empty number means, with only the last digits of the number shown.
    pub hint: String,
}

#[derive(Default)]
pub(crate) struct TextForm {
    pub name: String,
    pub subject: String,
    pub message: String,
    pub reply_to: String,
    pub error: Option<FieldErr>,
}

/// The note for the agent: what is saved (or was typed and sent back), and its limit.
pub(crate) struct NoteForm {
    pub text: String,
    pub max: usize,
    pub error: Option<FieldErr>,
}

pub(crate) struct CommandIds {
    pub note: String,
    pub move_queue: String,
    pub callback: String,
    pub change_callback: String,
    pub cancel_callback: String,
    pub email: String,
    pub web_form: String,
}

#[derive(Template)]
#[template(path = "status.html")]
pub(crate) struct StatusPage {
    pub number: String,
    pub number_grouped: String,
    pub confirmation: Option<String>,
    pub notice: Option<String>,
    /// First on the page when a form came back refused; it takes the focus.
    pub summary: Option<Summary>,
    /// The contact can still change: without JavaScript the page reloads itself.
    pub refresh: bool,
    /// The contact can still change and this is the status page itself: without
    /// JavaScript it reloads itself (`refresh`) unless the caller turned that off.
    pub updating: bool,
    /// Only this control's form is shown (its own page); `None`: the whole status page.
    pub only: Option<&'static str>,
    /// "your time, Europe/Paris": the zone the times are in, and the forms' `tz` value.
    pub zone_label: String,
    pub zone_name: String,
    /// On the cancel page: what cancelling loses, in words.
    pub cancel_loses: String,
    pub d: Display,
    pub story: Vec<words::StoryLine>,
    pub any_options: bool,
    pub version: u64,
    pub csrf: String,
    pub command_ids: CommandIds,
    pub note_form: Option<NoteForm>,
    /// "Call me now" (issue 16): a contact whose call ended while its place is kept, with
    /// a calling number to ring, books an immediate call-back in one press; the number as
    /// the page may show it ("the number ending 0118").
    pub call_me_now: Option<String>,
    pub move_form: Option<MoveForm>,
    pub callback_form: Option<CallbackForm>,
    pub change_callback_form: Option<CallbackForm>,
    pub cancel_callback: bool,
    pub email_form: Option<TextForm>,
    pub webform_form: Option<TextForm>,
    /// A chat contact's conversation and message box (set by the handlers that show it).
    pub chat: Option<super::chat::ChatSection>,
}

fn group(id: &ContactId) -> String {
    let s = id.as_str();
    [&s[0..4], &s[4..8], &s[8..12]].join(" ")
}

impl StatusPage {
    /// Whether the page shows the control `kind` (all of them, or only its own).
    fn shows(&self, kind: &str) -> bool {
        self.only.is_none_or(|k| k == kind)
    }

    pub(crate) fn build(
        secret: &[u8; 32],
        session: &str,
        status: &ContactStatus,
        view: View,
    ) -> StatusPage {
        let has = |k: ActionKind| status.options.contains(&k);
        let (typed_kind, typed, error) = match view.typed {
            Some((kind, form, e)) => (
                kind,
                Some(form),
                Some(FieldErr {
                    field: e.field,
                    message: e.message,
                }),
            ),
            None => (None, None, None),
        };
        let mut error = error;
        let mut notice = view.notice;
        // The sent-back form's values and error go to that form only; an error for a form
        // no longer offered (or one without fields) becomes the notice.
        let shown = typed_kind.is_some_and(|k| has(k) && k != ActionKind::CancelCallback);
        if !shown && let Some(e) = error.take() {
            notice.get_or_insert(e.message);
        }
        // Repeated first on the page, linked to its field: on a phone the form is far down.
        let summary = error.as_ref().map(|e| Summary {
            target: field_id(typed_kind, &e.field),
            message: e.message.clone(),
        });
        let zone = &view.zone;
        let typed_for = |k: ActionKind| {
            if typed_kind == Some(k) {
                typed.as_ref()
            } else {
                None
            }
        };
        let mut error_for = |k: ActionKind| {
            if typed_kind == Some(k) {
                error.take()
            } else {
                None
            }
        };
        let v = |f: Option<&ActionForm>, get: fn(&ActionForm) -> &Option<String>| {
            f.and_then(|f| get(f).clone()).unwrap_or_default()
        };
        let move_form = has(ActionKind::MoveQueue).then(|| {
            let chosen = v(typed_for(ActionKind::MoveQueue), |f| &f.to);
            MoveForm {
                targets: status
                    .move_targets
                    .iter()
                    .map(|t| MoveOption {
                        value: t.queue.0.clone(),
                        label: words::target(t),
                        selected: t.queue.0 == chosen,
                    })
                    .collect(),
                error: error_for(ActionKind::MoveQueue),
            }
        });
        // Whoever holds the contact number must not learn the caller's phone number: the
        // forms never show it; an empty field means "my own number" / "keep the number".
        // Always a hint (the field's `aria-describedby` points at it): what an empty field
        // means when the calling number is known, else what to type.
        const TYPE_A_NUMBER: &str = "Enter the number to call, with the country code when it is abroad (for example +44 20 7946 0018).";
        let own_hint = status.default_callback_number.as_deref().map_or_else(
            || TYPE_A_NUMBER.to_owned(),
            |n| {
                format!(
                    "Leave empty to be called back on the number you are calling from ({}).",
                    words::masked(n).trim_start_matches("the ")
                )
            },
        );
        let call_me_now = match (&status.state, &status.default_callback_number) {
            (crate::centre::ContactState::Disconnected { .. }, Some(n))
                if has(ActionKind::Callback) =>
            {
                Some(words::masked(n))
            }
            _ => None,
        };
        let callback_form = has(ActionKind::Callback).then(|| {
            let f = typed_for(ActionKind::Callback);
            CallbackForm {
                number: v(f, |f| &f.number),
                not_before: v(f, |f| &f.not_before),
                not_after: v(f, |f| &f.not_after),
                error: error_for(ActionKind::Callback),
                hint: own_hint.clone(),
            }
        });
        let change_callback_form = has(ActionKind::ChangeCallback).then(|| {
            let error = error_for(ActionKind::ChangeCallback);
            let (current, window) = match &status.substitute {
                Some(crate::centre::Substitute::Callback { number, window }) => {
                    (Some(number.as_str()), *window)
                }
                _ => (None, None),
            };
            let hint = current.map_or_else(
                || TYPE_A_NUMBER.to_owned(),
                |n| format!("Leave empty to keep {}.", words::masked(n)),
            );
            match typed_for(ActionKind::ChangeCallback) {
                Some(f) => CallbackForm {
                    number: v(Some(f), |f| &f.number),
                    not_before: v(Some(f), |f| &f.not_before),
                    not_after: v(Some(f), |f| &f.not_after),
                    error,
                    hint,
                },
                None => CallbackForm {
                    number: String::new(),
                    not_before: window
                        .map(|w| zone.datetime_local(w.not_before))
                        .unwrap_or_default(),
                    not_after: window
                        .map(|w| zone.datetime_local(w.not_after))
                        .unwrap_or_default(),
                    error,
                    hint,
                },
            }
        });
        let note_form = has(ActionKind::Note).then(|| NoteForm {
            text: match typed_for(ActionKind::Note) {
                Some(f) => v(Some(f), |f| &f.note),
                None => status.note.clone().unwrap_or_default(),
            },
            max: forms::MAX_NOTE,
            error: error_for(ActionKind::Note),
        });
        let mut text_form = |k: ActionKind| {
            has(k).then(|| {
                let f = typed_for(k);
                TextForm {
                    name: v(f, |f| &f.name),
                    subject: v(f, |f| &f.subject),
                    message: v(f, |f| &f.message),
                    reply_to: v(f, |f| &f.reply_to),
                    error: error_for(k),
                }
            })
        };
        let email_form = text_form(ActionKind::Email);
        let webform_form = text_form(ActionKind::WebForm);
        let cancel_callback = has(ActionKind::CancelCallback);
        // A key only for a form the page shows (the template uses none of the others).
        let id_for = |k: ActionKind| {
            if has(k) {
                forms::fresh_command_id()
            } else {
                String::new()
            }
        };
        // Cancelling ends the contact: say what goes with it.
        let cancel_loses = match status.position {
            Some(p) => format!(
                "We will not call you back, and you lose your place in the queue (you are {} now). To be helped later you would call again and start at the back.",
                words::ordinal(p)
            ),
            None => "We will not call you back, and you lose your place in the queue. To be helped later you would call again and start at the back.".to_owned(),
        };
        StatusPage {
            number: status.id.to_string(),
            number_grouped: group(&status.id),
            confirmation: view.confirmation,
            notice,
            summary,
            updating: status.state.is_live() && view.only.is_none(),
            refresh: status.state.is_live() && view.only.is_none() && !view.updates_off,
            only: view.only.map(ActionKind::as_str),
            zone_label: zone.label(),
            zone_name: zone.name().to_owned(),
            cancel_loses,
            d: words::display_in(status, zone),
            story: view.story,
            any_options: !status.options.is_empty(),
            version: status.version,
            csrf: csrf::token(secret, session, status.id.as_str()),
            command_ids: CommandIds {
                note: id_for(ActionKind::Note),
                move_queue: id_for(ActionKind::MoveQueue),
                callback: id_for(ActionKind::Callback),
                change_callback: id_for(ActionKind::ChangeCallback),
                cancel_callback: id_for(ActionKind::CancelCallback),
                email: id_for(ActionKind::Email),
                web_form: id_for(ActionKind::WebForm),
            },
            note_form,
            call_me_now,
            move_form,
            callback_form,
            change_callback_form,
            cancel_callback,
            email_form,
            webform_form,
            chat: None,
        }
    }
}
