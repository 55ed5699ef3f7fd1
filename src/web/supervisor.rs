//! The supervisor's view (`/supervisor`): login, the live wallboard, reports from the
//! store, and actions on agents and waiting contacts.
//!
//! Authentication is the agents' ([`super::agent`]): constant-time password checks, the
//! same per-address login limit, HMAC-signed session cookies — in a realm of their own
//! (cookie `hl_supervisor`, its own MAC domain), so an agent's cookie never opens this
//! view — and a CSRF token bound to the session on every change. A supervisor sees and
//! acts on only the queues configured for them (all when none are), and on the agents who
//! serve one of those queues.
//!
//! The wallboard's live figures come from the centre's snapshot and read view; today's
//! totals (answered, abandoned, ASA, AHT, service level) from the store through a
//! read-only connection on a blocking task ([`crate::store::report`]), cached a few
//! seconds so many wall screens cost one query. What the pages show is built in
//! [`super::supervisor_view`]; the plots are [`super::plot`]'s.
//!
//! One file (about 840 production lines) because its handlers share one thing each must get right in
//! the same way: who the supervisor is (`from_cookie`), whether the CSRF token is theirs,
//! and which queues and agents they may see and touch; split, each part would re-state it.

use std::convert::Infallible;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use crate::centre::{AgentError, AgentId, CommandError, ContactId, QueueId, SupervisorMove};
use crate::store::report::{self as store_report, ContactFact, DayFacts};

use super::agent::{self, Credentials, SUPERVISORS};
use super::api::AppError;
use super::pages::render;
use super::report::{self, DayTotals, Interval, Report};
use super::supervisor_view::{Board, ReportPage};
use super::{AppState, Client, Session, csrf, limit, words};

/// Where the wallboard lives; the session cookie is also set on [`API_PATH`].
pub const PATH: &str = "/supervisor";
pub const API_PATH: &str = "/api/supervisor";
/// The CSRF "contact" of the wallboard's forms.
const CSRF_SCOPE: &str = "supervisor";
const LOGIN_SCOPE: &str = "supervisor-login";
/// Today's facts are read from the store at most this often.
const TODAY_TTL: Duration = Duration::from_secs(5);
/// The live wallboard is re-rendered at most this often.
const LIVE_EVERY: Duration = Duration::from_secs(1);
/// Longest report period (days), so one request cannot read years of history.
const MAX_REPORT_DAYS: u64 = 93;

/// One configured supervisor's credentials and the queues they see.
#[derive(Clone)]
pub struct SupervisorAccount {
    pub id: String,
    pub name: String,
    pub password: String,
    /// Queue ids; empty: every queue.
    pub queues: Vec<String>,
}

impl SupervisorAccount {
    /// Whether this supervisor sees `queue`.
    pub fn sees(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }
}

impl fmt::Debug for SupervisorAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorAccount")
            .field("id", &self.id)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl Credentials for SupervisorAccount {
    fn login_id(&self) -> &str {
        &self.id
    }
    fn password(&self) -> &str {
        &self.password
    }
}

/// What the supervisor's view needs from the composition root.
#[derive(Debug, Clone)]
pub struct Supervision {
    pub accounts: Vec<SupervisorAccount>,
    /// `[supervisors] service_level_secs`.
    pub service_level_secs: u32,
    /// The data directory holding the store; `None`: no reports (tests of the web alone).
    pub data_dir: Option<PathBuf>,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            accounts: Vec::new(),
            service_level_secs: 20,
            data_dir: None,
        }
    }
}

/// Today's facts and totals as last brought up to date, and when.
#[derive(Debug)]
struct Today {
    at: Instant,
    facts: DayFacts,
    totals: Arc<DayTotals>,
}

/// Today's totals, shared by every wallboard for [`TODAY_TTL`]; `refresh` lets one
/// request bring them up to date while the others wait for its answer (not N reads at
/// once). Read whole once a day; after that only the contacts that changed
/// ([`DayFacts::catch_up`]), each applied to the totals as a change, so a refresh costs
/// work in proportion to what changed and a render to the queues and quarter hours.
#[derive(Debug, Default)]
pub(crate) struct TodayCache {
    held: Mutex<Option<Today>>,
    refresh: tokio::sync::Mutex<()>,
}

impl TodayCache {
    /// The totals of the day starting at `day_start`, if brought up to date less than
    /// [`TODAY_TTL`] ago.
    fn fresh(&self, day_start: u64) -> Option<Arc<DayTotals>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_ref() {
            Some(t) if t.at.elapsed() < TODAY_TTL && t.facts.day_start == day_start => {
                Some(t.totals.clone())
            }
            _ => None,
        }
    }

    /// The facts and totals held for the day starting at `day_start`, taken out to be
    /// brought up to date (none for another day: that one is read whole).
    fn take(&self, day_start: u64) -> Option<(DayFacts, Arc<DayTotals>)> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.take() {
            Some(t) if t.facts.day_start == day_start => Some((t.facts, t.totals)),
            _ => None,
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/supervisor", get(board))
        .route("/supervisor/login", get(login_page).post(login))
        .route("/supervisor/logout", post(logout))
        .route("/supervisor/events", get(events))
        .route("/supervisor/agent", post(agent_action))
        .route("/supervisor/move", post(move_contact))
        .route("/supervisor/reports", get(reports_page))
        .route("/supervisor/reports.csv", get(reports_csv))
}

// --- sessions ---------------------------------------------------------------------------

/// Supervisors' session generations share the agents' table under their own prefix.
fn generation_key(id: &str) -> String {
    format!("supervisor:{id}")
}

impl super::Shared {
    fn supervisor_generation(&self, id: &str) -> u64 {
        self.session_generation(&generation_key(id))
    }

    /// Ends every session of supervisor `id` (they logged out).
    fn end_supervisor_sessions(&self, id: &str) {
        if !self.web.supervision.accounts.iter().any(|a| a.id == id) {
            return;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        *sessions.entry(generation_key(id)).or_insert(0) += 1;
    }
}

/// The logged-in supervisor of a request: (account, cookie value).
pub(crate) fn from_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Option<(SupervisorAccount, String)> {
    let value = agent::cookie_value_in(SUPERVISORS, headers)?;
    let id = agent::verify_session_in(
        SUPERVISORS,
        &state.web.secret,
        &value,
        |id| state.supervisor_generation(id),
        agent::now_secs(),
    )?;
    let account = state
        .web
        .supervision
        .accounts
        .iter()
        .find(|a| a.id == id)?
        .clone();
    Some((account, value))
}

fn with_session_cookies(response: Response, value: &str) -> Response {
    let r = agent::with_cookie(
        response,
        &agent::session_cookie_in(SUPERVISORS, value, PATH),
    );
    agent::with_cookie(r, &agent::session_cookie_in(SUPERVISORS, value, API_PATH))
}

fn without_session_cookies(response: Response) -> Response {
    let r = agent::with_cookie(response, &agent::clear_cookie_in(SUPERVISORS, PATH));
    agent::with_cookie(r, &agent::clear_cookie_in(SUPERVISORS, API_PATH))
}

// --- login ------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "supervisor_login.html")]
struct LoginPage {
    csrf: String,
    id: String,
    error: Option<String>,
}

async fn login_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    if from_cookie(&state, &headers).is_some() {
        return Redirect::to(PATH).into_response();
    }
    let page = LoginPage {
        csrf: csrf::token(&state.web.secret, &session.id, LOGIN_SCOPE),
        id: String::new(),
        error: None,
    };
    session.apply(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct LoginForm {
    id: Option<String>,
    password: Option<String>,
    csrf: Option<String>,
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
        let secs = limit::retry_after_secs(wait);
        let mut r = render(
            StatusCode::TOO_MANY_REQUESTS,
            &LoginPage {
                csrf: String::new(),
                id: String::new(),
                error: Some(format!(
                    "Too many failed logins from this address. Please wait {secs} seconds and try again."
                )),
            },
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let typed: String = form.id.unwrap_or_default().chars().take(32).collect();
    let Some(account) = agent::authenticate(
        &state.web.secret,
        &state.web.supervision.accounts,
        typed.trim(),
        form.password.as_deref().unwrap_or(""),
    )
    .cloned() else {
        state.failed_login(ip);
        tracing::info!("supervisor login refused");
        let page = LoginPage {
            csrf: csrf::token(&state.web.secret, &session, LOGIN_SCOPE),
            id: typed,
            error: Some("That supervisor id and password do not match.".to_owned()),
        };
        return render(StatusCode::UNAUTHORIZED, &page);
    };
    tracing::info!(supervisor = %account.id, "supervisor logged in");
    let value = agent::session_value_in(
        SUPERVISORS,
        &state.web.secret,
        &account.id,
        state.supervisor_generation(&account.id),
        agent::now_secs(),
    );
    with_session_cookies(Redirect::to(PATH).into_response(), &value)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Some((account, value)) = from_cookie(&state, &headers) else {
        return Redirect::to("/supervisor/login").into_response();
    };
    let token = form.ok().and_then(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf::verify(&state.web.secret, &value, CSRF_SCOPE, &token) {
        return super::pages::forbidden();
    }
    state.end_supervisor_sessions(&account.id);
    tracing::info!(supervisor = %account.id, "supervisor logged out");
    without_session_cookies(Redirect::to("/supervisor/login").into_response())
}

// --- the wallboard ----------------------------------------------------------------------

/// The totals of the contacts that arrived since the start of today (the centre's day),
/// from the store, at most [`TODAY_TTL`] old; empty without a store.
async fn today(state: &AppState) -> Arc<DayTotals> {
    let now = crate::centre::Timestamp::now_wall();
    let day_start = state.web.zone.interval_start(now, 1440).0;
    if let Some(totals) = state.today.fresh(day_start) {
        return totals;
    }
    let _one_reader = state.today.refresh.lock().await;
    // Another wallboard may have read them while this one waited.
    if let Some(totals) = state.today.fresh(day_start) {
        return totals;
    }
    let Some(dir) = state.web.supervision.data_dir.clone() else {
        return Arc::default();
    };
    let sl_ms = u64::from(state.web.supervision.service_level_secs) * 1000;
    let held = state.today.take(day_start);
    let read = tokio::task::spawn_blocking(move || {
        let conn = store_report::open_read(&dir)?;
        let (facts, mut totals, changes) = match held {
            Some((mut facts, totals)) => {
                let changes = facts.catch_up(&conn)?;
                (facts, totals, changes)
            }
            None => {
                let (facts, changes) = DayFacts::load(&conn, day_start)?;
                (facts, Arc::default(), changes)
            }
        };
        // Copied only if a wallboard still holds these totals while rendering (they are
        // small: queues times quarter hours).
        let sums = Arc::make_mut(&mut totals);
        for c in &changes {
            sums.apply(c.old.as_ref(), &c.new, sl_ms);
        }
        Ok::<_, crate::store::StoreError>((facts, totals))
    })
    .await;
    let (facts, totals) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            // Read whole again next time.
            tracing::warn!(error = %e, "reading today's contacts failed");
            return Arc::default();
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading today's contacts failed");
            return Arc::default();
        }
    };
    let mut held = state.today.held.lock().unwrap_or_else(|e| e.into_inner());
    *held = Some(Today {
        at: Instant::now(),
        facts,
        totals: totals.clone(),
    });
    totals
}

/// The facts of contacts that arrived in `[from, to)`, read on a blocking task.
async fn facts_between(state: &AppState, from: u64, to: u64) -> Result<Vec<ContactFact>, String> {
    let Some(dir) = state.web.supervision.data_dir.clone() else {
        return Ok(Vec::new());
    };
    tokio::task::spawn_blocking(move || {
        let conn = store_report::open_read(&dir)?;
        store_report::contacts_between(&conn, from, to)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

async fn agent_since(state: &AppState) -> std::collections::HashMap<String, u64> {
    let Some(dir) = state.web.supervision.data_dir.clone() else {
        return std::collections::HashMap::new();
    };
    let read = tokio::task::spawn_blocking(move || {
        let conn = store_report::open_read(&dir)?;
        store_report::agent_state_since(&conn)
    })
    .await;
    match read {
        Ok(Ok(map)) => map,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading agents' states failed");
            std::collections::HashMap::new()
        }
        Err(_) => std::collections::HashMap::new(),
    }
}

async fn board_now(state: &AppState, account: &SupervisorAccount) -> Board {
    let facts = today(state).await;
    let since = agent_since(state).await;
    let snapshot = state.web.centre.snapshots().borrow().clone();
    let history = state.history.samples();
    Board::of(
        account,
        &snapshot,
        state.web.centre.view(),
        (&facts, &since, &history),
        &state.web.zone,
        state.web.supervision.service_level_secs,
    )
}

#[derive(Template)]
#[template(path = "supervisor.html")]
struct BoardPage {
    b: Board,
    name: String,
    csrf: String,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "supervisor_live.html")]
struct LivePart<'a> {
    b: &'a Board,
    csrf: &'a str,
}

async fn board_page(
    state: &AppState,
    account: &SupervisorAccount,
    value: &str,
    status: StatusCode,
    notice: Option<String>,
) -> Response {
    let b = board_now(state, account).await;
    render(
        status,
        &BoardPage {
            b,
            name: account.name.clone(),
            csrf: csrf::token(&state.web.secret, value, CSRF_SCOPE),
            notice,
        },
    )
}

async fn board(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match from_cookie(&state, &headers) {
        Some((account, value)) => board_page(&state, &account, &value, StatusCode::OK, None).await,
        None => Redirect::to("/supervisor/login").into_response(),
    }
}

/// The live part of the wallboard now, then again whenever it changes (checked on every
/// centre snapshot, at most once a [`LIVE_EVERY`], and every few seconds for the clocks).
fn board_stream(
    state: AppState,
    account: SupervisorAccount,
    csrf: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let rx = state.web.centre.snapshots();
    stream::unfold(
        (state, account, csrf, rx, None::<String>),
        |(state, account, csrf, mut rx, last)| async move {
            loop {
                if last.is_some() {
                    tokio::time::sleep(LIVE_EVERY).await;
                    // A change, or every 5 s for the waits and times in state.
                    let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
                    rx.borrow_and_update();
                }
                let b = board_now(&state, &account).await;
                let html = LivePart { b: &b, csrf: &csrf }.render().ok()?;
                if last.as_deref() != Some(html.as_str()) {
                    let event = Event::default().event("board").data(html.clone());
                    return Some((Ok(event), (state, account, csrf, rx, Some(html))));
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
    let stream =
        futures_util::StreamExt::take_until(board_stream(state.clone(), account, csrf), stop);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// --- actions ----------------------------------------------------------------------------

#[derive(Deserialize)]
struct AgentForm {
    agent: Option<String>,
    action: Option<String>,
    csrf: Option<String>,
}

/// The supervisor may act on `agent`: a configured agent serving one of their queues.
fn may_act_on_agent(state: &AppState, account: &SupervisorAccount, agent: &str) -> bool {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    snapshot
        .agents
        .iter()
        .find(|a| a.id.as_str() == agent)
        .is_some_and(|a| a.skills.iter().any(|(q, _)| account.sees(&q.0)))
}

async fn agent_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<AgentForm>, FormRejection>,
) -> Response {
    let Some((account, value)) = from_cookie(&state, &headers) else {
        return Redirect::to("/supervisor/login").into_response();
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
        tracing::info!(supervisor = %account.id, "refused: missing or wrong CSRF token");
        return super::pages::forbidden();
    }
    let target = form.agent.unwrap_or_default();
    if !may_act_on_agent(&state, &account, &target) {
        return board_page(
            &state,
            &account,
            &value,
            StatusCode::FORBIDDEN,
            Some("That agent does not serve any of your queues.".to_owned()),
        )
        .await;
    }
    let id = AgentId(target.clone());
    let centre = &state.web.centre;
    let result = match form.action.as_deref() {
        // Recorded in the queue_log as Asterisk records a pause: PAUSEALL, then PAUSE in
        // each queue, with the reason naming the supervisor.
        Some("not_ready") => {
            centre
                .agent_not_ready(id.clone(), format!("set by supervisor {}", account.id))
                .await
        }
        // REMOVEMEMBER in each queue, as Asterisk logs a member removed by a manager.
        Some("logout") => {
            let r = centre.agent_logout(id.clone()).await;
            if r.is_ok() {
                state.end_sessions(&target);
            }
            r
        }
        _ => {
            return board_page(
                &state,
                &account,
                &value,
                StatusCode::BAD_REQUEST,
                Some("Unknown button. Please reload the page.".to_owned()),
            )
            .await;
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(supervisor = %account.id, agent = %target, action = ?form.action, "supervisor action");
            Redirect::to(PATH).into_response()
        }
        Err(e @ AgentError::NotAllowed { .. }) => {
            let text = format!("{target}: {}", agent::refusal(&e));
            board_page(&state, &account, &value, StatusCode::CONFLICT, Some(text)).await
        }
        Err(e) => {
            tracing::warn!(supervisor = %account.id, error = %e, "supervisor action failed");
            super::pages::unavailable()
        }
    }
}

#[derive(Deserialize)]
struct MoveForm {
    contact: Option<String>,
    to: Option<String>,
    reason: Option<String>,
    csrf: Option<String>,
}

async fn move_contact(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<MoveForm>, FormRejection>,
) -> Response {
    let Some((account, value)) = from_cookie(&state, &headers) else {
        return Redirect::to("/supervisor/login").into_response();
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
        tracing::info!(supervisor = %account.id, "refused: missing or wrong CSRF token");
        return super::pages::forbidden();
    }
    let refuse = |status, text: &str| {
        let text = text.to_owned();
        let (state, account, value) = (state.clone(), account.clone(), value.clone());
        async move { board_page(&state, &account, &value, status, Some(text)).await }
    };
    let Ok(contact) = form.contact.unwrap_or_default().parse::<ContactId>() else {
        return refuse(StatusCode::BAD_REQUEST, "No such contact.").await;
    };
    let to = form.to.unwrap_or_default();
    let Some(from) = state.web.centre.view().status(&contact).map(|s| s.queue) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "No such contact: it may have ended. The board shows who is waiting now.",
        )
        .await;
    };
    // Both ends of the move must be this supervisor's queues.
    if !account.sees(&from.0) || !account.sees(&to) {
        return refuse(
            StatusCode::FORBIDDEN,
            "You can move contacts only between your own queues.",
        )
        .await;
    }
    let input = SupervisorMove {
        contact,
        to: QueueId(to),
        supervisor: account.id.clone(),
        reason: form.reason.unwrap_or_default(),
    };
    match state.web.centre.supervisor_move(input).await {
        Ok(done) => {
            tracing::info!(supervisor = %account.id, ?done, "supervisor moved a contact");
            Redirect::to(PATH).into_response()
        }
        Err(CommandError::NotAllowed { reason, .. }) => {
            refuse(StatusCode::CONFLICT, words::refusal(reason)).await
        }
        Err(CommandError::Invalid { field, problem }) => {
            refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                &words::problem(field, problem),
            )
            .await
        }
        Err(CommandError::NotFound) => refuse(StatusCode::NOT_FOUND, "No such contact.").await,
        Err(e) => {
            tracing::warn!(supervisor = %account.id, error = %e, "supervisor move failed");
            super::pages::unavailable()
        }
    }
}

// --- reports ----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct ReportQuery {
    interval: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The report's period and interval from the query: `from`/`to` as dates (`2026-12-02`,
/// whole days in the centre's zone, `to` inclusive) or `datetime-local` values; default
/// today.
fn period(state: &AppState, q: &ReportQuery) -> Result<(Interval, u64, u64), String> {
    let interval = match q.interval.as_deref().filter(|s| !s.is_empty()) {
        None => Interval::Hour,
        Some(s) => Interval::parse(s).ok_or("interval must be 15m, hour or day")?,
    };
    let zone = &state.web.zone;
    let now = crate::centre::Timestamp::now_wall();
    let read = |s: &str, end: bool| -> Result<u64, String> {
        let s = s.trim();
        if s.len() == 10 {
            let t = zone
                .parse_datetime_local(&format!("{s}T00:00"))
                .ok_or_else(|| format!("{s:?} is not a date like 2026-12-02"))?;
            // `to` as a date includes that whole day.
            Ok(if end {
                zone.interval_start(t.plus_secs(36 * 3600), 1440).0
            } else {
                t.0
            })
        } else {
            zone.parse_datetime_local(s)
                .map(|t| t.0)
                .ok_or_else(|| format!("{s:?} is not a date or a time like 2026-12-02T09:00"))
        }
    };
    let today = zone.interval_start(now, 1440);
    let from = match q.from.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => read(s, false)?,
        None => today.0,
    };
    // Default: to the end of today (tomorrow's midnight: 36 h after today's, floored,
    // whatever daylight saving does to the day's length).
    let to = match q.to.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => read(s, true)?,
        None => zone.interval_start(today.plus_secs(36 * 3600), 1440).0,
    };
    if to <= from {
        return Err("to must be after from".to_owned());
    }
    if to - from > MAX_REPORT_DAYS * 86_400_000 {
        return Err(format!("a report covers at most {MAX_REPORT_DAYS} days"));
    }
    Ok((interval, from, to))
}

async fn build_report(
    state: &AppState,
    account: &SupervisorAccount,
    q: &ReportQuery,
) -> Result<Report, AppError> {
    let (interval, from, to) = period(state, q).map_err(AppError::BadRequest)?;
    let facts = facts_between(state, from, to).await.map_err(|e| {
        tracing::warn!(error = %e, "reading the report's contacts failed");
        AppError::Unavailable
    })?;
    Ok(report::build(
        &facts,
        (from, to),
        interval,
        &state.web.zone,
        state.web.supervision.service_level_secs,
        |queue| account.sees(queue),
    ))
}

async fn reports_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    let Some((account, _)) = from_cookie(&state, &headers) else {
        return Redirect::to("/supervisor/login").into_response();
    };
    let (report, error, status) = match build_report(&state, &account, &q).await {
        Ok(r) => (Some(r), None, StatusCode::OK),
        Err(AppError::BadRequest(e)) => (None, Some(e), StatusCode::BAD_REQUEST),
        Err(_) => return super::pages::unavailable(),
    };
    let page = ReportPage::of(
        report.as_ref(),
        error,
        (
            q.interval.as_deref().unwrap_or("hour"),
            q.from.as_deref().unwrap_or(""),
            q.to.as_deref().unwrap_or(""),
        ),
        &state.web.zone,
    );
    render(status, &page)
}

async fn reports_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Response {
    let Some((account, _)) = from_cookie(&state, &headers) else {
        return Redirect::to("/supervisor/login").into_response();
    };
    match build_report(&state, &account, &q).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"holdline-report.csv\"",
                ),
            ],
            report::csv(&r),
        )
            .into_response(),
        Err(AppError::BadRequest(e)) => (StatusCode::BAD_REQUEST, e).into_response(),
        Err(_) => super::pages::unavailable(),
    }
}

/// `GET /api/supervisor/reports` (listed in `api::API_ROUTES`, described in
/// docs/openapi.yaml).
pub(crate) async fn reports_json(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Report>, AppError> {
    let Some((account, _)) = from_cookie(&state, &headers) else {
        return Err(AppError::NotSupervisor);
    };
    let Query(q) = q.map_err(|e| AppError::BadRequest(e.body_text()))?;
    build_report(&state, &account, &q).await.map(Json)
}
