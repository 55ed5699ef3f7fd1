//! The JSON API: the same as the pages, for scripts and apps. Errors are
//! `application/problem+json` (RFC 9457), mapped in one place: [`AppError`].
//! Described in `docs/openapi.yaml`; a test keeps the two in step through [`API_ROUTES`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use serde_json::json;

use crate::centre::{Command, CommandError, CommandRequest, ContactId, ContactStatus};

use super::forms::{self, FieldError};
use super::public::PublicStatus;
use super::{AppState, Client, Session, agent_api, csrf, limit, sse, words};

/// What `axum::Json` sends as the content type.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Every route served under `/api/`, as (method, path).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/contacts/{id}"),
    ("post", "/api/contacts/{id}/actions"),
    ("get", "/api/contacts/{id}/events"),
    ("post", "/api/agent/login"),
    ("get", "/api/agent/me"),
    ("post", "/api/agent/state"),
    ("post", "/api/agent/done"),
    ("post", "/api/agent/reply"),
    ("get", "/api/supervisor/reports"),
];

fn handler(method: &str, path: &str) -> MethodRouter<AppState> {
    match (method, path) {
        ("get", "/api/contacts/{id}") => get(contact),
        ("post", "/api/contacts/{id}/actions") => post(action),
        ("get", "/api/contacts/{id}/events") => get(sse::api_events),
        ("post", "/api/agent/login") => post(agent_api::login),
        ("get", "/api/agent/me") => get(agent_api::me),
        ("post", "/api/agent/state") => post(agent_api::set_state),
        ("post", "/api/agent/done") => post(agent_api::done),
        ("post", "/api/agent/reply") => post(agent_api::reply),
        ("get", "/api/supervisor/reports") => get(super::supervisor::reports_json),
        _ => unreachable!("API_ROUTES lists a route without a handler: {method} {path}"),
    }
}

/// The API routes, built from [`API_ROUTES`] so the list cannot drift from the router.
pub(crate) fn routes() -> Router<AppState> {
    API_ROUTES
        .iter()
        .fold(Router::new(), |r, (m, p)| r.route(p, handler(m, p)))
}

/// Every way an API request can fail, and the one place they become responses.
#[derive(Debug)]
pub enum AppError {
    NotFound,
    /// A path under `/api/` that no route serves.
    NoRoute,
    RateLimited {
        retry_after_secs: u64,
    },
    Forbidden,
    BadRequest(String),
    Invalid {
        field: String,
        message: String,
    },
    NotAllowed {
        reason: String,
        current: Box<ContactStatus>,
    },
    IdReused,
    Unavailable,
    /// Agent API: no or wrong credentials (never with a Basic challenge).
    Unauthorized,
    /// Agent API: too many failed logins from this client.
    LoginRateLimited {
        retry_after_secs: u64,
    },
    /// Agent API: the agent's state does not allow this now.
    AgentConflict(String),
    /// Supervisor API: no supervisor's session (an agent's never counts).
    NotSupervisor,
}

impl From<CommandError> for AppError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound => AppError::NotFound,
            CommandError::NotAllowed { reason, current } => AppError::NotAllowed {
                reason: words::refusal(reason).to_owned(),
                current,
            },
            CommandError::Invalid { field, problem } => AppError::Invalid {
                field: field.to_owned(),
                message: words::problem(field, problem),
            },
            CommandError::IdReused => AppError::IdReused,
            CommandError::Storage(e) => {
                tracing::warn!(error = %e, "command not stored");
                AppError::Unavailable
            }
            CommandError::ShuttingDown => AppError::Unavailable,
        }
    }
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, slug, title) = match &self {
            AppError::NotFound => (StatusCode::NOT_FOUND, "not-found", "Contact not found"),
            AppError::NoRoute => (StatusCode::NOT_FOUND, "no-route", "No such API route"),
            AppError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many failed lookups",
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Missing or wrong CSRF token, or another site's Origin",
            ),
            AppError::BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "bad-request", "Malformed request")
            }
            AppError::Invalid { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "A field is not valid",
            ),
            AppError::NotAllowed { .. } => (
                StatusCode::CONFLICT,
                "not-allowed",
                "Not allowed in the contact's current state",
            ),
            AppError::IdReused => (
                StatusCode::CONFLICT,
                "command-id-reused",
                "The command id was used for a different command",
            ),
            AppError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Try again shortly; nothing was changed",
            ),
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Agent credentials missing or wrong",
            ),
            AppError::LoginRateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many failed logins",
            ),
            AppError::AgentConflict(_) => (
                StatusCode::CONFLICT,
                "agent-state",
                "Not allowed in the agent's current state",
            ),
            AppError::NotSupervisor => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Supervisor session missing or expired",
            ),
        };
        let mut body = json!({
            "type": format!("/problems/{slug}"),
            "title": title,
            "status": status.as_u16(),
        });
        let detail = match &self {
            AppError::NotFound => "No contact has that number.".to_owned(),
            AppError::NoRoute => {
                "Nothing is served at this path; docs/openapi.yaml lists the routes.".to_owned()
            }
            AppError::RateLimited { retry_after_secs } => {
                format!(
                    "Too many numbers that we could not find; retry after {retry_after_secs} s."
                )
            }
            AppError::Forbidden => {
                "Send the X-CSRF-Token from GET /api/contacts/{id} with the same hl_session cookie (agent API: the csrf from the login or /api/agent/me, with the hl_agent cookie)."
                    .to_owned()
            }
            AppError::BadRequest(m) => m.clone(),
            AppError::Invalid { message, .. } => message.clone(),
            AppError::NotAllowed { reason, .. } => reason.clone(),
            AppError::IdReused => "Use a fresh command_id for a new command.".to_owned(),
            AppError::Unavailable => "The change could not be made now.".to_owned(),
            AppError::Unauthorized => {
                "Log in with POST /api/agent/login, or send Authorization: Basic with the agent id and password."
                    .to_owned()
            }
            AppError::LoginRateLimited { retry_after_secs } => {
                format!("Too many failed logins from this address; retry after {retry_after_secs} s.")
            }
            AppError::AgentConflict(reason) => reason.clone(),
            AppError::NotSupervisor => {
                "Log in as a supervisor at /supervisor/login (the hl_supervisor cookie).".to_owned()
            }
        };
        body["detail"] = json!(detail);
        match &self {
            AppError::Invalid { field, .. } => body["field"] = json!(field),
            AppError::NotAllowed { current, .. } => {
                body["current"] = PublicStatus::new(current).to_value();
            }
            _ => {}
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        match self {
            AppError::RateLimited { retry_after_secs }
            | AppError::LoginRateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            AppError::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

/// A path's contact number, checked, and looked up as `pages::find` does (the budget is
/// skipped for the link's token or a client that proved the number).
pub(crate) async fn find(
    state: &AppState,
    ip: std::net::IpAddr,
    session: Option<&str>,
    token: Option<&str>,
    raw: &str,
) -> Result<(ContactId, ContactStatus), AppError> {
    let gate = || {
        state.gate(ip).map_err(|wait| AppError::RateLimited {
            retry_after_secs: limit::retry_after_secs(wait),
        })
    };
    let Ok(id) = raw.parse::<ContactId>() else {
        // Malformed: no lookup, but a client over its budget hears that first, as before.
        gate()?;
        return Err(AppError::NotFound);
    };
    let status = if state.vouched(session, token, &id) {
        state.web.centre.status(id.clone()).await
    } else {
        gate()?;
        state.lookup(ip, &id).await
    }
    .ok_or(AppError::NotFound)?;
    if let Some(s) = session {
        state.prove(s, &id);
    }
    Ok((id, status))
}

async fn contact(
    State(state): State<AppState>,
    Client(ip): Client,
    session: Session,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let token = super::link::token_in(query.as_deref());
    match find(&state, ip, Some(session.id.as_str()), token, &raw).await {
        Ok((id, status)) => {
            let token = csrf::token(&state.web.secret, &session.id, id.as_str());
            let story = state.web.centre.timeline(id.clone()).await;
            let body = PublicStatus::new_in(&status, &state.web.zone)
                .with_story(story.as_deref(), &state.web.zone)
                .with_csrf(token)
                .to_vec();
            let response = ([(header::CONTENT_TYPE, JSON)], body).into_response();
            session.apply(response)
        }
        Err(e) => e.into_response(),
    }
}

/// `{"command_id", "version"?, "action", ...fields}`: the command's own JSON shape
/// (see `Command`) plus the idempotency key and the version the client last saw.
#[derive(Deserialize)]
struct ApiCommand {
    command_id: String,
    version: Option<u64>,
    #[serde(flatten)]
    command: Command,
}

async fn action(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Response, AppError> {
    let id = raw.parse::<ContactId>().ok();
    let proven = id
        .as_ref()
        .is_some_and(|id| Session::from_headers(&headers).is_some_and(|s| state.proven(&s, id)));
    if !proven {
        state.gate(ip).map_err(|wait| AppError::RateLimited {
            retry_after_secs: limit::retry_after_secs(wait),
        })?;
    }
    let id = id.ok_or(AppError::NotFound)?;
    let session = Session::from_headers(&headers).ok_or(AppError::Forbidden)?;
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !csrf::verify(&state.web.secret, &session, id.as_str(), token) {
        tracing::info!(contact = %id.redacted(), "refused: missing or wrong CSRF token");
        return Err(AppError::Forbidden);
    }
    let request: ApiCommand = json_body(&headers, &body, "the command", "a command")?;
    let command_id = forms::command_id(&request.command_id)?;
    forms::validate(&request.command)?;
    let confirmation = match state
        .web
        .centre
        .command(CommandRequest {
            id: command_id.clone(),
            contact: id.clone(),
            expected_version: request.version,
            command: request.command,
        })
        .await
    {
        Ok(c) => c,
        Err(CommandError::NotFound) => {
            state.failed_lookup(ip);
            return Err(AppError::NotFound);
        }
        Err(e) => return Err(e.into()),
    };
    state.remember(&id, &command_id, confirmation.clone());
    let status = state
        .web
        .centre
        .status(id.clone())
        .await
        .ok_or(AppError::NotFound)?;
    let text = words::confirmation(&confirmation, &state.web.centre.snapshots().borrow());
    let mut confirmation = serde_json::to_value(&confirmation).unwrap_or_default();
    // The sentence the confirmation page shows ("We are moving your call to Paris
    // office. Stay on the line."), so apps need not word it themselves.
    confirmation["text"] = json!(text);
    if let Some(n) = confirmation
        .get("number")
        .and_then(|n| n.as_str())
        .map(words::masked)
    {
        confirmation["number"] = json!(n);
    }
    Ok(axum::Json(json!({
        "confirmation": confirmation,
        "status": PublicStatus::new_in(&status, &state.web.zone)
            .with_story(
                state.web.centre.timeline(id.clone()).await.as_deref(),
                &state.web.zone
            )
            .to_value(),
    }))
    .into_response())
}

/// The JSON body of an API call, or a 400 saying what is wrong: not sent as
/// `application/json` ("Send {noun} as application/json.") or not `what` the call takes
/// ("The body is not {what}: …").
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
    noun: &str,
    what: &str,
) -> Result<T, AppError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(AppError::BadRequest(format!(
            "Send {noun} as application/json."
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        // A field the call needs and the body lacks is that field's error (422 naming it,
        // as for a field that is there but wrong); anything else is a malformed body.
        let text = e.to_string();
        match text
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, _)) if e.classify() == serde_json::error::Category::Data => {
                AppError::Invalid {
                    field: field.to_owned(),
                    message: format!("`{field}` is required."),
                }
            }
            _ => AppError::BadRequest(format!("The body is not {what}: {e}")),
        }
    })
}

/// Unknown paths under `/api/`: a problem+json 404 like every other API error, not the
/// HTML page a browser gets.
pub(crate) async fn not_found() -> Response {
    AppError::NoRoute.into_response()
}
