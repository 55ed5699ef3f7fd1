//! The agent console (`/agent`): login with the configured id and password, a signed
//! session cookie, the agent's state and buttons, the offered or connected contact with
//! everything the caller gave, and the queues the agent serves; live by server-sent
//! events (`static/agent.js`), and by reloading without JavaScript.
//!
//! Also the authentication shared with the agent JSON API ([`super::agent_api`]): password
//! checks in constant time, failed logins rate-limited per client address, sessions as
//! `agent.expiry.hmac` cookies keyed by the app secret (no server-side session table: a
//! restart, with its new secret, logs every browser out).
//!
//! What the console shows is built in [`super::agent_view`]. Must not import `sip` or
//! `media`; talks to the centre through `CentreHandle` only, and learns whether an agent's
//! phone is registered through the lookup the composition root gives (`WebState::phones`).

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::watch;

use crate::centre::{AgentError, AgentId, Snapshot, Timestamp, ViewHandle};

pub(crate) use super::agent_view::ConsoleView;
pub use super::agent_view::{duration, state_text};
use super::pages::render;
use super::zone::Zone;
use super::{AppState, Client, Session, csrf, limit, words};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Name of the agent session cookie.
pub const AGENT_COOKIE: &str = "hl_agent";
/// Cookie path of the console; the JSON API's login sets its own cookie on `/api/agent`.
pub const CONSOLE_PATH: &str = "/agent";
pub const API_PATH: &str = "/api/agent";
/// How long a login lasts.
pub const SESSION_SECS: u64 = 12 * 3600;
/// The CSRF "contact" of the console forms and API calls made with the cookie.
pub const CSRF_SCOPE: &str = "agent";
/// The CSRF "contact" of the login form.
const LOGIN_SCOPE: &str = "agent-login";
/// What an agent who goes ready without a registered phone is told.
pub(crate) const PHONE_NOT_REGISTERED_NOTICE: &str = "You are ready, but your phone is not registered: emails and web forms can reach you, and the first call offered to you will put you not ready. Register your phone (see below).";
/// Reasons offered for "Not ready".
pub const NOT_READY_REASONS: &[&str] = &["break", "lunch", "training", "other"];

/// One configured agent's credentials, as the web server checks them.
#[derive(Clone)]
pub struct AgentAccount {
    pub id: AgentId,
    pub name: String,
    pub password: String,
}

impl fmt::Debug for AgentAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn keyed(secret: &[u8; 32]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key")
}

/// Constant-time password check: both sides are MACed first, so the comparison is of
/// two fixed-length tags whatever the lengths of the passwords.
pub fn password_matches(secret: &[u8; 32], given: &str, expected: &str) -> bool {
    let mut want = keyed(secret);
    want.update(b"agent-password\0");
    want.update(expected.as_bytes());
    let want = want.finalize().into_bytes();
    let mut got = keyed(secret);
    got.update(b"agent-password\0");
    got.update(given.as_bytes());
    got.verify_slice(&want).is_ok()
}

/// An account that logs in with an id and a password (agents, supervisors).
pub trait Credentials {
    fn login_id(&self) -> &str;
    fn password(&self) -> &str;
}

impl Credentials for AgentAccount {
    fn login_id(&self) -> &str {
        self.id.as_str()
    }
    fn password(&self) -> &str {
        &self.password
    }
}

/// The configured account whose id and password these are. An unknown id costs the same
/// work as a wrong password.
pub fn authenticate<'a, A: Credentials>(
    secret: &[u8; 32],
    accounts: &'a [A],
    id: &str,
    password: &str,
) -> Option<&'a A> {
    match accounts.iter().find(|a| a.login_id() == id) {
        Some(a) => password_matches(secret, password, a.password()).then_some(a),
        None => {
            let _ = password_matches(secret, password, "\0no such agent");
            None
        }
    }
}

/// Whose sessions a cookie carries: its name and the MAC's domain, so that a cookie signed
/// for one kind of account never verifies as another (an agent's is no supervisor's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Realm {
    pub cookie: &'static str,
    mac: &'static [u8],
}

/// The agents' sessions (console and API).
pub(crate) const AGENTS: Realm = Realm {
    cookie: AGENT_COOKIE,
    mac: b"agent-session\0",
};

/// The supervisors' sessions (`/supervisor`, `/api/supervisor`).
pub(crate) const SUPERVISORS: Realm = Realm {
    cookie: "hl_supervisor",
    mac: b"supervisor-session\0",
};

/// The session's MAC covers the account's session generation, which logging out advances:
/// every cookie issued before a logout stops verifying at once, with no session table.
fn session_mac(
    realm: Realm,
    secret: &[u8; 32],
    agent: &str,
    expiry: u64,
    generation: u64,
) -> HmacSha256 {
    let mut mac = keyed(secret);
    mac.update(realm.mac);
    mac.update(agent.as_bytes());
    mac.update(b"\0");
    mac.update(expiry.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(&generation.to_be_bytes());
    mac
}

/// A session cookie value for `agent` in its session `generation`, valid until
/// `now_secs + SESSION_SECS`.
pub fn session_value(secret: &[u8; 32], agent: &str, generation: u64, now_secs: u64) -> String {
    session_value_in(AGENTS, secret, agent, generation, now_secs)
}

/// [`session_value`] for an account of `realm`.
pub(crate) fn session_value_in(
    realm: Realm,
    secret: &[u8; 32],
    agent: &str,
    generation: u64,
    now_secs: u64,
) -> String {
    let expiry = now_secs + SESSION_SECS;
    let tag = session_mac(realm, secret, agent, expiry, generation)
        .finalize()
        .into_bytes();
    format!("{agent}.{expiry}.{}", hex::encode(tag))
}

/// The agent id in a session value that we signed for the agent's current session
/// generation (`generation_of`) and that has not expired.
pub fn verify_session(
    secret: &[u8; 32],
    value: &str,
    generation_of: impl Fn(&str) -> u64,
    now_secs: u64,
) -> Option<String> {
    verify_session_in(AGENTS, secret, value, generation_of, now_secs)
}

/// [`verify_session`] for an account of `realm`.
pub(crate) fn verify_session_in(
    realm: Realm,
    secret: &[u8; 32],
    value: &str,
    generation_of: impl Fn(&str) -> u64,
    now_secs: u64,
) -> Option<String> {
    let mut parts = value.rsplitn(3, '.');
    let (tag, expiry, agent) = (parts.next()?, parts.next()?, parts.next()?);
    let expiry: u64 = expiry.parse().ok()?;
    let tag = hex::decode(tag).ok()?;
    session_mac(realm, secret, agent, expiry, generation_of(agent))
        .verify_slice(&tag)
        .ok()
        .filter(|()| now_secs < expiry)
        .map(|()| agent.to_owned())
}

/// `Set-Cookie` for a session on `path`.
pub fn session_cookie(value: &str, path: &str) -> String {
    session_cookie_in(AGENTS, value, path)
}

pub(crate) fn session_cookie_in(realm: Realm, value: &str, path: &str) -> String {
    let name = realm.cookie;
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={SESSION_SECS}")
}

/// `Set-Cookie` that removes the session on `path`.
pub fn clear_cookie(path: &str) -> String {
    clear_cookie_in(AGENTS, path)
}

pub(crate) fn clear_cookie_in(realm: Realm, path: &str) -> String {
    let name = realm.cookie;
    format!("{name}=; HttpOnly; SameSite=Strict; Path={path}; Max-Age=0")
}

/// The raw session cookie value from the request, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    cookie_value_in(AGENTS, headers)
}

pub(crate) fn cookie_value_in(realm: Realm, headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == realm.cookie && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

pub(crate) fn now_secs() -> u64 {
    Timestamp::now_wall().0 / 1000
}

/// The logged-in agent of a request carrying a valid session cookie: (account, cookie value).
pub(crate) fn from_cookie(state: &AppState, headers: &HeaderMap) -> Option<(AgentAccount, String)> {
    let value = cookie_value(headers)?;
    let id = verify_session(
        &state.web.secret,
        &value,
        |agent| state.session_generation(agent),
        now_secs(),
    )?;
    let account = state
        .web
        .agents
        .iter()
        .find(|a| a.id.as_str() == id)?
        .clone();
    Some((account, value))
}

// --- pages ------------------------------------------------------------------------------

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/agent", get(login_page))
        .route("/agent/login", post(login))
        .route("/agent/console", get(console).post(console_action))
        .route("/agent/console/events", get(events))
}

#[derive(Template)]
#[template(path = "agent_login.html")]
struct LoginPage {
    csrf: String,
    agent: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "agent_console.html")]
struct ConsolePage {
    v: ConsoleView,
    csrf: String,
    notice: Option<String>,
    reasons: &'static [&'static str],
}

/// The part of the console that live updates replace.
#[derive(Template)]
#[template(path = "agent_live.html")]
struct LivePart<'a> {
    v: &'a ConsoleView,
    csrf: &'a str,
    reasons: &'static [&'static str],
}

fn live_html(v: &ConsoleView, csrf: &str) -> String {
    LivePart {
        v,
        csrf,
        reasons: NOT_READY_REASONS,
    }
    .render()
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "the agent console template failed");
        String::new()
    })
}

pub(crate) fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn login_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    if from_cookie(&state, &headers).is_some() {
        return Redirect::to("/agent/console").into_response();
    }
    let page = LoginPage {
        csrf: csrf::token(&state.web.secret, &session.id, LOGIN_SCOPE),
        agent: String::new(),
        error: None,
    };
    session.apply(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct LoginForm {
    agent: Option<String>,
    password: Option<String>,
    csrf: Option<String>,
}

fn too_many_logins(wait: std::time::Duration) -> Response {
    let secs = limit::retry_after_secs(wait);
    let mut r = render(
        StatusCode::TOO_MANY_REQUESTS,
        &LoginPage {
            csrf: String::new(),
            agent: String::new(),
            error: Some(format!(
                "Too many failed logins from this address. Please wait {secs} seconds and try again."
            )),
        },
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Logs the agent in at the centre unless they already are (a second browser, a reload).
pub(crate) async fn log_in_at_centre(state: &AppState, id: &AgentId) -> Result<(), AgentError> {
    let logged_in = state
        .web
        .centre
        .snapshots()
        .borrow()
        .agents
        .iter()
        .any(|a| &a.id == id && a.state.is_logged_in());
    if logged_in {
        return Ok(());
    }
    match state.web.centre.agent_login(id.clone()).await {
        // Raced with another login: logged in either way.
        Ok(()) | Err(AgentError::NotAllowed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn login(
    State(state): State<AppState>,
    Client(ip): Client,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return super::pages::forbidden();
    };
    let Some(session) = Session::from_headers(&headers) else {
        return super::pages::forbidden();
    };
    if !csrf::verify(
        &state.web.secret,
        &session,
        LOGIN_SCOPE,
        form.csrf.as_deref().unwrap_or(""),
    ) {
        return super::pages::forbidden();
    }
    if let Err(wait) = state.login_gate(ip) {
        return too_many_logins(wait);
    }
    let typed: String = form.agent.unwrap_or_default().chars().take(32).collect();
    let Some(account) = authenticate(
        &state.web.secret,
        &state.web.agents,
        typed.trim(),
        form.password.as_deref().unwrap_or(""),
    )
    .cloned() else {
        state.failed_login(ip);
        tracing::info!("agent console login refused");
        let page = LoginPage {
            csrf: csrf::token(&state.web.secret, &session, LOGIN_SCOPE),
            agent: typed,
            error: Some("That agent id and password do not match.".to_owned()),
        };
        return render(StatusCode::UNAUTHORIZED, &page);
    };
    if let Err(e) = log_in_at_centre(&state, &account.id).await {
        tracing::warn!(agent = %account.id, error = %e, "agent login not stored");
        return super::pages::unavailable();
    }
    tracing::info!(agent = %account.id, "agent logged in to the console");
    let value = session_value(
        &state.web.secret,
        account.id.as_str(),
        state.session_generation(account.id.as_str()),
        now_secs(),
    );
    with_cookie(
        Redirect::to("/agent/console").into_response(),
        &session_cookie(&value, CONSOLE_PATH),
    )
}

fn console_page(
    state: &AppState,
    account: &AgentAccount,
    value: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Response {
    console_page_with(state, account, value, status, notice, false)
}

/// [`console_page`], with the phone set-up help shown when `phone_help`.
fn console_page_with(
    state: &AppState,
    account: &AgentAccount,
    value: &str,
    status: StatusCode,
    notice: Option<String>,
    phone_help: bool,
) -> Response {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    let Some(mut v) = ConsoleView::of(
        &account.id,
        &snapshot,
        state.web.centre.view(),
        &state.web.sip_address,
        &state.web.zone,
    ) else {
        return super::pages::unavailable();
    };
    if phone_help {
        v.phone_help = Some(super::agent_view::PhoneHelp {
            server: state.web.sip_address.clone(),
            user: account.id.to_string(),
        });
    }
    render(
        status,
        &ConsolePage {
            v,
            csrf: csrf::token(&state.web.secret, value, CSRF_SCOPE),
            notice,
            reasons: NOT_READY_REASONS,
        },
    )
}

async fn console(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match from_cookie(&state, &headers) {
        Some((account, value)) => console_page(&state, &account, &value, StatusCode::OK, None),
        None => Redirect::to("/agent").into_response(),
    }
}

#[derive(Deserialize)]
struct ConsoleForm {
    action: Option<String>,
    reason: Option<String>,
    csrf: Option<String>,
    /// The reply to the chat or IM contact the agent holds (`action=reply`).
    text: Option<String>,
}

/// The agent's reply to the chat or IM contact they hold.
async fn reply(state: &AppState, account: &AgentAccount, value: &str, text: String) -> Response {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    let holding = snapshot
        .agents
        .iter()
        .find(|a| a.id == account.id)
        .and_then(|a| a.contact.clone());
    let Some(contact) = holding else {
        let notice = "You hold no chat to reply to.".to_owned();
        return console_page(state, account, value, StatusCode::CONFLICT, Some(notice));
    };
    let author = crate::centre::Author::Agent {
        id: account.id.clone(),
    };
    match state.web.centre.post(contact, author, text).await {
        Ok(_) => Redirect::to("/agent/console").into_response(),
        Err(e) => {
            let code = match e {
                crate::centre::PostError::Storage(_) | crate::centre::PostError::ShuttingDown => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                crate::centre::PostError::Empty | crate::centre::PostError::TooLong { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::CONFLICT,
            };
            let notice = super::chat::post_error_words(&e);
            console_page(state, account, value, code, Some(notice))
        }
    }
}

/// The console's buttons, as the API's states: what to ask of the centre.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentAction {
    Ready,
    NotReady(String),
    Logout,
    Done,
}

/// Asks the centre; Ok when done (or already so).
pub(crate) async fn apply(
    state: &AppState,
    id: &AgentId,
    action: AgentAction,
) -> Result<(), AgentError> {
    let centre = &state.web.centre;
    match action {
        AgentAction::Ready => centre.agent_ready(id.clone()).await,
        AgentAction::NotReady(reason) => centre.agent_not_ready(id.clone(), reason).await,
        AgentAction::Logout => {
            centre.agent_logout(id.clone()).await?;
            // Every cookie issued so far stops working, not only this browser's.
            state.end_sessions(id.as_str());
            Ok(())
        }
        AgentAction::Done => centre.contact_handled(id.clone()).await,
    }
}

/// A reason from the list, or "not ready".
pub(crate) fn reason(typed: Option<&str>) -> String {
    let typed = typed.unwrap_or("").trim();
    NOT_READY_REASONS
        .iter()
        .find(|r| r.eq_ignore_ascii_case(typed))
        .map_or_else(|| "not ready".to_owned(), |r| (*r).to_owned())
}

/// In words, why the centre refused.
pub(crate) fn refusal(e: &AgentError) -> String {
    match e {
        AgentError::NotAllowed { state, asked } => words::agent_refusal(state, *asked),
        other => other.to_string(),
    }
}

async fn console_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<ConsoleForm>, FormRejection>,
) -> Response {
    let Some((account, value)) = from_cookie(&state, &headers) else {
        return Redirect::to("/agent").into_response();
    };
    let Ok(Form(form)) = form else {
        return super::pages::forbidden();
    };
    if !csrf::verify(
        &state.web.secret,
        &value,
        CSRF_SCOPE,
        form.csrf.as_deref().unwrap_or(""),
    ) {
        tracing::info!(agent = %account.id, "refused: missing or wrong CSRF token");
        return super::pages::forbidden();
    }
    let action = match form.action.as_deref() {
        Some("ready" | "ready_now") => AgentAction::Ready,
        Some("not_ready") => AgentAction::NotReady(reason(form.reason.as_deref())),
        Some("logout") => AgentAction::Logout,
        Some("done") => AgentAction::Done,
        Some("reply") => {
            return reply(&state, &account, &value, form.text.unwrap_or_default()).await;
        }
        _ => {
            return console_page(
                &state,
                &account,
                &value,
                StatusCode::BAD_REQUEST,
                Some("Unknown button. Please reload the page.".to_owned()),
            );
        }
    };
    let logout = action == AgentAction::Logout;
    // Ready without a registered phone: emails and web forms can still reach the agent,
    // but the first call offered would put them not ready. Say so now, with how to
    // register the phone, instead of letting them find out from that.
    let phone_missing =
        action == AgentAction::Ready && state.web.phone_missing(account.id.as_str()).await;
    match apply(&state, &account.id, action).await {
        Ok(()) if phone_missing => {
            tracing::info!(agent = %account.id, "ready without a registered phone");
            console_page_with(
                &state,
                &account,
                &value,
                StatusCode::OK,
                Some(PHONE_NOT_REGISTERED_NOTICE.to_owned()),
                true,
            )
        }
        Ok(()) if logout => {
            tracing::info!(agent = %account.id, "agent logged out");
            with_cookie(
                Redirect::to("/agent").into_response(),
                &clear_cookie(CONSOLE_PATH),
            )
        }
        Ok(()) => Redirect::to("/agent/console").into_response(),
        Err(e @ AgentError::NotAllowed { .. }) => console_page(
            &state,
            &account,
            &value,
            StatusCode::CONFLICT,
            Some(refusal(&e)),
        ),
        Err(e) => {
            tracing::warn!(agent = %account.id, error = %e, "agent request failed");
            super::pages::unavailable()
        }
    }
}

/// The live part of the console now, then again whenever it changes.
fn console_stream(
    id: AgentId,
    csrf: String,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    view: ViewHandle,
    (sip_address, zone): (String, Zone),
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    stream::unfold(
        (
            snapshots,
            None::<String>,
            id,
            csrf,
            (view, sip_address, zone),
        ),
        |(mut rx, last, id, csrf, (view, sip_address, zone))| async move {
            loop {
                if last.is_some() {
                    rx.changed().await.ok()?;
                }
                let html = {
                    let snapshot = rx.borrow_and_update().clone();
                    ConsoleView::of(&id, &snapshot, &view, &sip_address, &zone)
                        .map(|v| live_html(&v, &csrf))?
                };
                if last.as_deref() != Some(html.as_str()) {
                    let event = Event::default().event("console").data(html.clone());
                    let next = (rx, Some(html), id, csrf, (view, sip_address, zone));
                    return Some((Ok(event), next));
                }
            }
        },
    )
}

async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((account, value)) = from_cookie(&state, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let csrf = csrf::token(&state.web.secret, &value, CSRF_SCOPE);
    let stop = state.web.shutdown.clone().cancelled_owned();
    let stream = futures_util::StreamExt::take_until(
        console_stream(
            account.id,
            csrf,
            state.web.centre.snapshots(),
            state.web.centre.view().clone(),
            (state.web.sip_address.clone(), state.web.zone.clone()),
        ),
        stop,
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [9; 32];

    #[test]
    fn passwords_compare_by_mac() {
        assert!(password_matches(&SECRET, "correct horse", "correct horse"));
        assert!(!password_matches(&SECRET, "correct hors", "correct horse"));
        assert!(!password_matches(&SECRET, "", "correct horse"));
        let agents = [AgentAccount {
            id: AgentId("ada".into()),
            name: "Ada".into(),
            password: "12345678".into(),
        }];
        assert!(authenticate(&SECRET, &agents, "ada", "12345678").is_some());
        assert!(authenticate(&SECRET, &agents, "ada", "123456789").is_none());
        assert!(authenticate(&SECRET, &agents, "bob", "12345678").is_none());
    }

    #[test]
    fn sessions_are_signed_and_expire() {
        let v = session_value(&SECRET, "a.d-a", 0, 1000);
        assert_eq!(
            verify_session(&SECRET, &v, |_| 0, 1001).as_deref(),
            Some("a.d-a")
        );
        assert_eq!(
            verify_session(&SECRET, &v, |_| 0, 1000 + SESSION_SECS),
            None,
            "expired"
        );
        assert_eq!(
            verify_session(&[1; 32], &v, |_| 0, 1001),
            None,
            "other secret"
        );
        let forged = v.replacen("a.d-a", "grace", 1);
        assert_eq!(verify_session(&SECRET, &forged, |_| 0, 1001), None);
        let later = v.replace(&format!(".{}.", 1000 + SESSION_SECS), ".99999999999.");
        assert_eq!(
            verify_session(&SECRET, &later, |_| 0, 1001),
            None,
            "expiry is signed"
        );
        for junk in ["", "ada", "ada.1", "ada.x.00", "..", "ada.5.zz"] {
            assert_eq!(verify_session(&SECRET, junk, |_| 0, 0), None, "{junk}");
        }
        let set = session_cookie(&v, CONSOLE_PATH);
        assert!(
            set.contains("HttpOnly; SameSite=Strict; Path=/agent;"),
            "{set}"
        );
        assert!(clear_cookie(CONSOLE_PATH).contains("Max-Age=0"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("hl_session=x; {AGENT_COOKIE}={v}")).unwrap(),
        );
        assert_eq!(cookie_value(&h), Some(v));
    }

    #[test]
    fn durations_and_reasons() {
        assert_eq!(duration(5), "5 s");
        assert_eq!(duration(245), "4 min 05 s");
        assert_eq!(duration(7380), "2 h 03 min");
        assert_eq!(reason(Some("Lunch")), "lunch");
        assert_eq!(reason(Some("<script>")), "not ready");
        assert_eq!(reason(None), "not ready");
    }
}
