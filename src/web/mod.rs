//! The web server: pages and the JSON API keyed on the contact number.
//!
//! Owns HTTP routing only; it reads the centre's snapshots and sends commands through
//! `CentreHandle`. Must not import `sip` or `media`.
//!
//! * [`pages`]: server-rendered HTML (askama templates in `templates/`), forms with
//!   post/redirect/get, working without JavaScript; `static/live.js` adds live updates.
//! * [`api`]: the same as JSON, errors as `application/problem+json` (`docs/openapi.yaml`).
//! * [`sse`]: server-sent events from the centre's snapshots for both; [`public`]: the
//!   status JSON both send.
//! * [`limit`]: failed lookups are rate-limited per client and in total.
//! * [`csrf`]: every state-changing request carries an HMAC token bound to the browser
//!   session and the contact; `Origin`, when sent, must match `Host`.
//! * [`words`]: the plain-words sentences; [`forms`]: input bounds and commands.
//! * [`chat`]: web chat for visitors (start page, message box, presence, flood limit).
//! * [`agent`]: the agent console under `/agent` (login, state, the contact's content) and
//!   agent authentication; [`agent_api`]: the same as JSON under `/api/agent/`.
//! * [`metrics`]: `GET /metrics`, Prometheus text from the centre's snapshot.
//! * [`supervisor`]: the supervisor's wallboard, reports and actions under `/supervisor`
//!   ([`supervisor_view`] what they show, [`report`] the report arithmetic, [`plot`] the
//!   SVG plots and their sampled history).

pub mod agent;
pub mod agent_api;
pub mod agent_view;
pub mod api;
pub mod chat;
pub mod conn_limit;
pub mod csrf;
pub mod forms;
pub mod limit;
pub mod link;
pub mod metrics;
pub mod pages;
pub mod plot;
pub mod public;
pub mod report;
pub mod sse;
pub mod supervisor;
pub mod supervisor_view;
pub mod words;
pub mod zone;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::centre::{CentreHandle, CommandId, Confirmation, ContactId, ContactStatus};

pub use agent::AgentAccount;
pub use limit::RateLimits;
pub use supervisor::{Supervision, SupervisorAccount};

/// Largest request body accepted (forms and API).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Confirmations remembered for the post/redirect/get page.
const DONE_CAPACITY: usize = 10_000;

pub const CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// What the web server needs from the rest of the gateway.
#[derive(Clone)]
pub struct WebState {
    pub centre: CentreHandle,
    /// Key of the CSRF tokens: random at startup, so tokens die with the process.
    pub secret: [u8; 32],
    pub limits: RateLimits,
    /// Cancelled when the server stops: ends the event streams, which would otherwise
    /// hold the graceful shutdown open.
    pub shutdown: CancellationToken,
    /// Who may log in to the agent console and the agent API.
    pub agents: Vec<AgentAccount>,
    /// Signs the caller links (Call-Info) so that opening one spends no guessing budget.
    pub link_key: link::LinkKey,
    /// The centre's time zone (`http.time_zone`): call-back windows and times are written
    /// and read in it when the caller's browser has not told its own.
    pub zone: zone::Zone,
    /// Where agents' softphones register ("192.0.2.10:5060"), told to an agent whose phone
    /// is not registered; "" when the gateway cannot know it (then the help omits it).
    pub sip_address: String,
    /// Whether an agent's phone can be reached now (the registrar's bindings); `None`
    /// where there is no SIP side (tests of the web alone): every phone counts as reachable.
    pub phones: Option<PhoneLookup>,
    /// Supervisors, the service level threshold, and where the reports read the store.
    pub supervision: Supervision,
    /// A web chat visitor with no page open for this long is away (`http.chat_idle_secs`).
    pub chat_idle_secs: u64,
}

/// Whether an agent's phone can take an offer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phone {
    /// A fixed address from the configuration.
    Fixed,
    /// Registered, at this contact.
    Registered(String),
    /// The agent registers their phone and it is not registered now.
    NotRegistered,
}

/// Looks up an agent's phone by agent id (given by the composition root, so that `web`
/// needs nothing from `sip`).
pub type PhoneLookup = std::sync::Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Phone> + Send>>
        + Send
        + Sync,
>;

impl WebState {
    /// The agent's phone is one that registers and it is not registered now.
    pub(crate) async fn phone_missing(&self, agent: &str) -> bool {
        match &self.phones {
            Some(lookup) => lookup(agent.to_owned()).await == Phone::NotRegistered,
            None => false,
        }
    }
}

/// The router's state: the given `WebState` plus what the web server keeps itself.
pub(crate) struct Shared {
    pub(crate) web: WebState,
    limiter: Mutex<limit::Limiter>,
    /// Failed agent logins (console, API, Basic auth), apart from contact lookups.
    logins: Mutex<limit::Limiter>,
    done: Mutex<DoneCache>,
    /// Each agent's session generation (absent = 0): a logout advances it, which ends
    /// every console and API session issued before (see `agent::session_mac`). Bounded by
    /// the configured agents. A restart draws a new `secret`, which ends them all.
    sessions: Mutex<HashMap<String, u64>>,
    /// Browsers that proved a contact number (its link, or a lookup that found it): their
    /// page's own requests skip the guessing budget (see `link`).
    proven: Mutex<Proven>,
    /// Today's contacts from the store, shared by the wallboards for a few seconds.
    today: supervisor::TodayCache,
    /// One sample a minute for the wallboard's plots (fed by `sample_history`).
    history: plot::History,
    /// Which web chat visitors are there (see `chat`).
    pub(crate) presence: chat::Presence,
    /// Each chat contact's message budget.
    pub(crate) floods: chat::Floods,
}

/// (browser session, contact number) pairs, bounded: the oldest goes first.
#[derive(Debug, Default)]
struct Proven {
    set: std::collections::HashSet<(String, ContactId)>,
    order: VecDeque<(String, ContactId)>,
}

/// Pairs remembered at most (a few MB).
const MAX_PROVEN: usize = 65_536;

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// `session` has shown it knows `id` (a valid link, or a lookup that found it).
    pub(crate) fn prove(&self, session: &str, id: &ContactId) {
        let mut p = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        let pair = (session.to_owned(), id.clone());
        if p.set.contains(&pair) {
            return;
        }
        while p.order.len() >= MAX_PROVEN {
            if let Some(old) = p.order.pop_front() {
                p.set.remove(&old);
            }
        }
        p.set.insert(pair.clone());
        p.order.push_back(pair);
    }

    /// Whether a request may skip the guessing budget for `id`: it carries the link's
    /// token, or comes from a browser that proved the number before.
    pub(crate) fn vouched(
        &self,
        session: Option<&str>,
        token: Option<&str>,
        id: &ContactId,
    ) -> bool {
        token.is_some_and(|t| self.web.link_key.verify(id, t))
            || session.is_some_and(|s| self.proven(s, id))
    }

    pub(crate) fn proven(&self, session: &str, id: &ContactId) -> bool {
        let p = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        p.set.contains(&(session.to_owned(), id.clone()))
    }

    pub(crate) fn session_generation(&self, agent: &str) -> u64 {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(agent).copied().unwrap_or(0)
    }

    /// Ends every session `agent` has (it logged out).
    pub(crate) fn end_sessions(&self, agent: &str) {
        if !self.web.agents.iter().any(|a| a.id.as_str() == agent) {
            return;
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        *sessions.entry(agent.to_owned()).or_insert(0) += 1;
    }

    /// `Err(retry_after)` when this client (or everyone) made too many failed lookups.
    pub(crate) fn gate(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.check(ip, Instant::now())
    }

    pub(crate) fn failed_lookup(&self, ip: IpAddr) {
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.record_failure(ip, Instant::now());
    }

    /// `Err(retry_after)` when this client (or everyone) failed to log in too often.
    pub(crate) fn login_gate(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut limiter = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        limiter.check(ip, Instant::now())
    }

    pub(crate) fn failed_login(&self, ip: IpAddr) {
        let mut limiter = self.logins.lock().unwrap_or_else(|e| e.into_inner());
        limiter.record_failure(ip, Instant::now());
    }

    /// Looks a contact up; a miss counts against the client's lookup budget.
    pub(crate) async fn lookup(&self, ip: IpAddr, id: &ContactId) -> Option<ContactStatus> {
        let found = self.web.centre.status(id.clone()).await;
        if found.is_none() {
            self.failed_lookup(ip);
            tracing::info!(contact = %id.redacted(), "lookup found nothing");
        }
        found
    }

    pub(crate) fn remember(&self, id: &ContactId, command: &CommandId, done: Confirmation) {
        let mut cache = self.done.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert((id.clone(), command.0.clone()), done);
    }

    pub(crate) fn recall(&self, id: &ContactId, command: &str) -> Option<Confirmation> {
        let cache = self.done.lock().unwrap_or_else(|e| e.into_inner());
        cache.map.get(&(id.clone(), command.to_owned())).cloned()
    }
}

/// Bounded map of recent confirmations (oldest forgotten first).
#[derive(Default)]
struct DoneCache {
    map: HashMap<(ContactId, String), Confirmation>,
    order: VecDeque<(ContactId, String)>,
}

impl DoneCache {
    fn insert(&mut self, key: (ContactId, String), done: Confirmation) {
        if self.map.insert(key.clone(), done).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > DONE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// The whole web surface as a value, so tests can serve it on any listener.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the rate limit
/// sees client addresses (without, every client shares one budget).
pub fn router(state: WebState) -> Router {
    let limiter = Mutex::new(limit::Limiter::new(state.limits, Instant::now()));
    let logins = Mutex::new(limit::Limiter::new(state.limits, Instant::now()));
    let shared = Arc::new(Shared {
        web: state,
        limiter,
        logins,
        done: Mutex::new(DoneCache::default()),
        sessions: Mutex::new(HashMap::new()),
        proven: Mutex::new(Proven::default()),
        today: supervisor::TodayCache::default(),
        history: plot::History::default(),
        presence: chat::Presence::default(),
        floods: chat::Floods::default(),
    });
    // Without a runtime (a router built outside one) there is no sampler: the plots stay
    // empty, the rest works.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sample_history(Arc::downgrade(&shared)));
    }
    pages::routes()
        .merge(chat::routes())
        .merge(api::routes())
        .merge(agent::routes())
        .merge(supervisor::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/static/live.js", get(live_js))
        .route("/static/agent.js", get(agent_js))
        .route("/static/supervisor.js", get(supervisor_js))
        .route("/static/style.css", get(style_css))
        .fallback(fallback)
        .layer(middleware::from_fn(guard))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// A path nothing serves: problem+json under `/api/`, the HTML page elsewhere.
async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        api::not_found().await
    } else {
        pages::fallback().await
    }
}

/// Liveness plus the figures an operator checks first: contacts waiting per queue, and how
/// honest its wait estimates have been over the last hour and day.
async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    let queues: Vec<_> = snapshot
        .queues
        .iter()
        .map(|q| {
            json!({
                "id": q.id.0,
                "name": q.name,
                "waiting": q.waiting,
                "staffed": q.staffed,
                "estimate_accuracy": { "hour": q.accuracy_hour, "day": q.accuracy_day },
            })
        })
        .collect();
    Json(json!({ "status": "ok", "queues": queues }))
}

async fn live_js() -> Response {
    script(include_str!("../../static/live.js"))
}

async fn agent_js() -> Response {
    script(include_str!("../../static/agent.js"))
}

async fn supervisor_js() -> Response {
    script(include_str!("../../static/supervisor.js"))
}

fn script(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Feeds the plots' history from the centre's snapshots, every few seconds, until the
/// server goes away (the router and its state dropped) or stops.
async fn sample_history(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.web.shutdown.is_cancelled() {
            return;
        }
        let snapshot = shared.web.centre.snapshots().borrow().clone();
        shared.history.record(&snapshot);
        let stop = shared.web.shutdown.clone();
        drop(shared);
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn style_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../static/style.css"),
    )
        .into_response()
}

/// Every request's gate and every response's headers, in one middleware (each `from_fn`
/// layer costs a service clone and a boxed future per request): a state-changing request
/// whose `Origin` is another site is refused (403); every response, that one too, carries
/// the security headers, and contact pages and the API are never cached.
async fn guard(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut response = if !safe && !origin_matches(request.headers()) {
        tracing::info!(path = %redact_path(request.uri().path()), "refused: Origin is another site");
        let api = request.uri().path().starts_with("/api/");
        forbidden(api)
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    // Room for these and what hyper adds (length, date) in one allocation, not a regrowth
    // per insert.
    h.reserve(8);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        // same-origin, not no-referrer: the number in URLs never leaves the site, and
        // browsers still send our own Origin with form posts (no-referrer makes it "null").
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// True when there is no `Origin`, or it names the `Host` the request was sent to.
pub fn origin_matches(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(HeaderValue::to_str),
    ) else {
        return false;
    };
    match origin.split_once("://") {
        Some((scheme, authority)) if scheme == "http" || scheme == "https" => {
            authority.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// The 403 answer (page or problem+json).
pub(crate) fn forbidden(api: bool) -> Response {
    if api {
        api::AppError::Forbidden.into_response()
    } else {
        pages::forbidden()
    }
}

/// A path with any contact number in it masked, for logs.
pub(crate) fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.parse::<ContactId>() {
            Ok(id) => id.redacted(),
            Err(_) if seg.len() > 8 && seg.bytes().all(|b| b.is_ascii_digit()) => {
                "*".repeat(seg.len())
            }
            Err(_) => seg.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The client's address (from the listener's connect info; unspecified without it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// The browser session from the `hl_session` cookie, or a fresh one to be set.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub id: String,
    /// Not sent by the browser: the response must set the cookie.
    pub fresh: bool,
}

impl Session {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(csrf::session_from_cookies)
            .map(str::to_owned)
    }

    /// Adds `Set-Cookie` to `response` when the session is new.
    pub(crate) fn apply(&self, mut response: Response) -> Response {
        if self.fresh
            && let Ok(v) = HeaderValue::from_str(&csrf::session_cookie(&self.id))
        {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(match Session::from_headers(&parts.headers) {
            Some(id) => Session { id, fresh: false },
            None => Session {
                id: csrf::new_session(),
                fresh: true,
            },
        })
    }
}

#[cfg(test)]
mod tests;
