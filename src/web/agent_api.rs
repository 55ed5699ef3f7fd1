//! The agent JSON API under `/api/agent/` (used by scripts and end-to-end tests): log in,
//! read one's own state and contact, change state, finish a contact.
//!
//! Every call accepts either `Authorization: Basic base64(agent:password)` (no cookie, no
//! CSRF token; we never send a Basic challenge, so browsers never cache it) or the
//! `hl_agent` cookie from `POST /api/agent/login` plus its `X-CSRF-Token` on POSTs.
//! Failed password checks count against the client's login budget (429 past it).
//! Errors are problem+json through [`AppError`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::centre::{AgentError, AgentId, AgentState};

use super::agent::{self, AgentAccount, AgentAction};
use super::api::{self, AppError};
use super::{AppState, Client, csrf, limit};

impl From<AgentError> for AppError {
    fn from(e: AgentError) -> Self {
        match e {
            // Configured at login but gone from the centre: treat as not logged in.
            AgentError::UnknownAgent(_) => AppError::Unauthorized,
            e @ AgentError::NotAllowed { .. } => AppError::AgentConflict(agent::refusal(&e)),
            AgentError::Storage(e) => {
                tracing::warn!(error = %e, "agent request not stored");
                AppError::Unavailable
            }
            AgentError::ShuttingDown => AppError::Unavailable,
        }
    }
}

fn rate_limited(wait: std::time::Duration) -> AppError {
    AppError::LoginRateLimited {
        retry_after_secs: limit::retry_after_secs(wait),
    }
}

/// Decodes standard base64 (with or without padding); `None` if it is not.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text).ok()
}

/// `(agent, password)` from an `Authorization: Basic` value.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (agent, password) = decoded.split_once(':')?;
    Some((agent.to_owned(), password.to_owned()))
}

/// Who is asking: Basic credentials, or the session cookie (with its CSRF token on
/// changes, `needs_csrf`).
async fn authorize(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    needs_csrf: bool,
) -> Result<(AgentAccount, Option<String>), AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        state.login_gate(ip).map_err(rate_limited)?;
        let found = value
            .to_str()
            .ok()
            .and_then(basic_credentials)
            .and_then(|(id, password)| {
                agent::authenticate(&state.web.secret, &state.web.agents, &id, &password).cloned()
            });
        return match found {
            Some(account) => Ok((account, None)),
            None => {
                state.failed_login(ip);
                tracing::info!("agent API: Basic credentials refused");
                Err(AppError::Unauthorized)
            }
        };
    }
    let (account, value) = agent::from_cookie(state, headers).ok_or(AppError::Unauthorized)?;
    if needs_csrf {
        let token = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !csrf::verify(&state.web.secret, &value, agent::CSRF_SCOPE, token) {
            tracing::info!(agent = %account.id, "refused: missing or wrong CSRF token");
            return Err(AppError::Forbidden);
        }
    }
    Ok((account, Some(value)))
}

/// The agent as the API shows it: state, the contact with everything the caller gave
/// (numbers unmasked: the agent needs them), and the queues they serve.
pub fn me_json(
    snapshot: &crate::centre::Snapshot,
    view: &crate::centre::ViewHandle,
    id: &AgentId,
) -> Option<Value> {
    let a = snapshot.agents.iter().find(|a| &a.id == id)?;
    let mut me = json!({
        "id": a.id,
        "name": a.name,
        "state": a.state.name(),
        "state_text": agent::state_text(&a.state),
    });
    match &a.state {
        AgentState::NotReady { reason } => me["reason"] = json!(reason),
        AgentState::WrapUp { until } => me["wrap_up_until"] = json!(until),
        AgentState::Reserved { until, .. } => me["offer_until"] = json!(until),
        _ => {}
    }
    if let Some(status) = a.contact.as_ref().and_then(|c| view.status(c)) {
        // A chat or IM contact's latest messages (the whole of a short conversation).
        if status.media.is_text()
            && let Some((_, last)) = view.messages(&status.id, u32::MAX, 0)
        {
            let keep = super::agent_view::CONSOLE_MESSAGES;
            let (tail, _) = view
                .messages(&status.id, last.saturating_sub(keep), keep as usize)
                .unwrap_or_default();
            me["messages"] = serde_json::to_value(tail).unwrap_or_default();
        }
        me["contact"] = serde_json::to_value(status).unwrap_or_default();
    }
    me["queues"] = a
        .skills
        .iter()
        .filter_map(|(q, level)| {
            let s = snapshot.queues.iter().find(|s| &s.id == q)?;
            Some(json!({ "id": s.id, "name": s.name, "skillset": s.skillset, "level": level, "waiting": s.waiting }))
        })
        .collect();
    Some(me)
}

async fn me_response(
    state: &AppState,
    id: &AgentId,
    cookie: Option<&str>,
) -> Result<Response, AppError> {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    let mut me = me_json(&snapshot, state.web.centre.view(), id).ok_or(AppError::Unauthorized)?;
    // Whether a call can ring the agent now (a ready agent without a registered phone
    // still takes emails and web forms; the first call would put them not ready).
    if let Some(lookup) = &state.web.phones {
        me["phone"] = json!(match lookup(id.to_string()).await {
            super::Phone::Fixed => "fixed",
            super::Phone::Registered(_) => "registered",
            super::Phone::NotRegistered => "not_registered",
        });
    }
    if let Some(value) = cookie {
        me["csrf"] = json!(csrf::token(&state.web.secret, value, agent::CSRF_SCOPE));
    }
    Ok(axum::Json(me).into_response())
}

#[derive(Deserialize)]
struct LoginBody {
    agent: String,
    password: String,
}

/// `POST /api/agent/login`: checks the password, logs the agent in at the centre (if
/// logged out) and sets the session cookie for `/api/agent`.
pub(crate) async fn login(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    state.login_gate(ip).map_err(rate_limited)?;
    let creds: LoginBody = api::json_body(&headers, &body, "the body", "what this call takes")?;
    let Some(account) = agent::authenticate(
        &state.web.secret,
        &state.web.agents,
        &creds.agent,
        &creds.password,
    )
    .cloned() else {
        state.failed_login(ip);
        tracing::info!("agent API login refused");
        return Err(AppError::Unauthorized);
    };
    agent::log_in_at_centre(&state, &account.id).await?;
    let value = agent::session_value(
        &state.web.secret,
        account.id.as_str(),
        state.session_generation(account.id.as_str()),
        agent::now_secs(),
    );
    let mut response = me_response(&state, &account.id, Some(&value)).await?;
    if let Ok(v) = HeaderValue::from_str(&agent::session_cookie(&value, agent::API_PATH)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `GET /api/agent/me`
pub(crate) async fn me(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (account, cookie) = authorize(&state, ip, &headers, false).await?;
    me_response(&state, &account.id, cookie.as_deref()).await
}

#[derive(Deserialize)]
struct StateBody {
    state: String,
    /// Absent, or a string: `null` is refused (the document says a string), so it is
    /// read as whatever value is there (`Option<Value>` alone would make `null` absent).
    #[serde(default, deserialize_with = "present")]
    reason: Option<serde_json::Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    <serde_json::Value as Deserialize>::deserialize(d).map(Some)
}

/// `POST /api/agent/state` `{"state": "logged_in"|"ready"|"not_ready"|"logged_out", "reason"?}`
pub(crate) async fn set_state(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let (account, cookie) = authorize(&state, ip, &headers, true).await?;
    let wanted: StateBody = api::json_body(&headers, &body, "the body", "what this call takes")?;
    let reason = match wanted.reason {
        None => None,
        Some(serde_json::Value::String(r)) => Some(r),
        Some(_) => {
            return Err(AppError::Invalid {
                field: "reason".to_owned(),
                message: "`reason` is one of break, lunch, training, other, or left out."
                    .to_owned(),
            });
        }
    };
    match wanted.state.as_str() {
        "logged_in" => agent::log_in_at_centre(&state, &account.id).await?,
        "ready" => agent::apply(&state, &account.id, AgentAction::Ready).await?,
        "not_ready" => {
            let reason = agent::reason(reason.as_deref());
            agent::apply(&state, &account.id, AgentAction::NotReady(reason)).await?;
        }
        "logged_out" => agent::apply(&state, &account.id, AgentAction::Logout).await?,
        other => {
            return Err(AppError::Invalid {
                field: "state".to_owned(),
                message: format!(
                    "{other:?} is not one of logged_in, ready, not_ready, logged_out."
                ),
            });
        }
    }
    me_response(&state, &account.id, cookie.as_deref()).await
}

/// `POST /api/agent/done`: the agent finished the connected contact.
pub(crate) async fn done(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (account, cookie) = authorize(&state, ip, &headers, true).await?;
    agent::apply(&state, &account.id, AgentAction::Done).await?;
    me_response(&state, &account.id, cookie.as_deref()).await
}

#[derive(Deserialize)]
struct ReplyBody {
    text: String,
}

/// `POST /api/agent/reply`: a message to the chat or IM contact the agent is connected
/// with; answers the message as stored (the customer gets it after that).
pub(crate) async fn reply(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let (account, _) = authorize(&state, ip, &headers, true).await?;
    let wanted: ReplyBody = api::json_body(&headers, &body, "the body", "what this call takes")?;
    let holding = state
        .web
        .centre
        .snapshots()
        .borrow()
        .agents
        .iter()
        .find(|a| a.id == account.id)
        .and_then(|a| a.contact.clone());
    let Some(contact) = holding else {
        return Err(AppError::AgentConflict(
            "You hold no chat to reply to.".to_owned(),
        ));
    };
    let author = crate::centre::Author::Agent {
        id: account.id.clone(),
    };
    match state.web.centre.post(contact, author, wanted.text).await {
        Ok(message) => Ok(axum::Json(message).into_response()),
        Err(e) => Err(match e {
            crate::centre::PostError::Empty | crate::centre::PostError::TooLong { .. } => {
                AppError::Invalid {
                    field: "text".to_owned(),
                    message: super::chat::post_error_words(&e),
                }
            }
            crate::centre::PostError::Storage(_) | crate::centre::PostError::ShuttingDown => {
                AppError::Unavailable
            }
            other => AppError::AgentConflict(super::chat::post_error_words(&other)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_basic_credentials() {
        assert_eq!(base64_decode("YWRhOjEyMzQ1Njc4").unwrap(), b"ada:12345678");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("YW!=").is_none());
        assert_eq!(
            basic_credentials("Basic YWRhOjEyOjM0"),
            Some(("ada".into(), "12:34".into())),
            "the password may hold colons"
        );
        assert_eq!(basic_credentials("Bearer YWRhOjEy"), None);
        assert_eq!(basic_credentials("Basic"), None);
    }
}
