//! Router tests against a real centre (`centre::spawn` on a `MemoryStore`), requests sent
//! with `tower::ServiceExt::oneshot`; plus rendering of each status shape.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::pages::{StatusPage, View};
use super::words::tests::status as hand_status;
use super::*;
use crate::centre::testkit;
use crate::centre::{
    self, ActionKind, CentreConfig, ContactState, EndReason, MediaType, MoveTarget, NewContact,
    QueueId, QueueSpec, Substitute, Timestamp, WaitEstimate,
};
use crate::store::MemoryStore;

const SECRET: [u8; 32] = [42; 32];
/// The fixture's caller-link key, so tests can make a link's token.
const LINK_KEY: [u8; 32] = [7; 32];

fn config() -> CentreConfig {
    let queue = |id: &str, name: &str| QueueSpec {
        name: name.into(),
        skillset: format!("{name} — English"),
        ..testkit::local_queue(id, 180)
    };
    CentreConfig {
        max_live_contacts: 100,
        ..testkit::config(
            vec![queue("support", "Support"), queue("sales", "Sales")],
            Vec::new(),
        )
    }
}

struct Fixture {
    app: Router,
    centre: CentreHandle,
    id: ContactId,
    _token: CancellationToken,
}

async fn fixture() -> Fixture {
    let token = CancellationToken::new();
    let (centre, _thread) =
        centre::spawn(config(), Box::new(MemoryStore::new()), token.clone()).expect("centre");
    let status = centre
        .admit(NewContact {
            queue: QueueId("support".into()),
            media: MediaType::Voice,
            caller: "sip:alice@example.com".into(),
            call_ref: "call-1".into(),
        })
        .await
        .expect("admitted");
    let app = router(WebState {
        centre: centre.clone(),
        secret: SECRET,
        limits: RateLimits::default(),
        shutdown: CancellationToken::new(),
        agents: Vec::new(),
        link_key: crate::web::link::LinkKey::fixed(LINK_KEY),
        sip_address: String::new(),
        phones: None,
        zone: crate::web::zone::Zone::utc(),
        supervision: Default::default(),
        chat_idle_secs: 60,
    });
    Fixture {
        app,
        centre,
        id: status.id,
        _token: token,
    }
}

/// A valid number (check digit right) that the centre does not know.
fn unknown_number(known: &ContactId) -> ContactId {
    (0u64..)
        .map(|n| format!("{n:011}"))
        .find_map(|s| {
            (0..10)
                .map(|d| format!("{s}{d}"))
                .find_map(|c| c.parse::<ContactId>().ok())
                .filter(|c| c != known)
        })
        .expect("some number")
}

/// The same digits with one changed: fails the check digit.
fn typo(id: &ContactId) -> String {
    let mut b = id.as_str().as_bytes().to_vec();
    b[3] = if b[3] == b'9' { b'0' } else { b[3] + 1 };
    String::from_utf8(b).expect("ascii")
}

fn from(ip: &str) -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::new(ip.parse::<IpAddr>().expect("ip"), 40000))
}

async fn send(app: &Router, request: Request<Body>) -> Response {
    app.clone().oneshot(request).await.expect("infallible")
}

async fn get(app: &Router, uri: &str) -> Response {
    send(app, Request::get(uri).body(Body::empty()).expect("request")).await
}

async fn body(response: Response) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn header_of(response: &Response, name: header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The session cookie ("hl_session=...") set by a response.
fn cookie(response: &Response) -> String {
    header_of(response, header::SET_COOKIE)
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned()
}

/// The value of the first `name="NAME" value="..."` in a page.
fn field(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let start = page.find(&key).expect(name) + key.len();
    page[start..][..page[start..].find('"').expect("quote")].to_owned()
}

fn form_post(uri: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .header(header::HOST, "gateway.test")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// A session cookie and the entry form's token.
async fn entry_session(app: &Router) -> (String, String) {
    let r = get(app, "/").await;
    let c = cookie(&r);
    (c, field(&body(r).await, "csrf"))
}

#[tokio::test]
async fn entry_page_has_the_form_and_starts_a_session() {
    let f = fixture().await;
    let r = get(&f.app, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = header_of(&r, header::SET_COOKIE);
    assert!(set.starts_with("hl_session="), "{set}");
    assert!(set.contains("HttpOnly; SameSite=Strict; Path=/"), "{set}");
    let page = body(r).await;
    for needle in [
        r#"<form id="lookup-form" method="post" action="/lookup">"#,
        r#"<input id="number" name="number""#,
        r#"<label for="number">"#,
        r#"<button id="lookup" type="submit">"#,
        r#"name="csrf""#,
    ] {
        assert!(page.contains(needle), "{needle} missing");
    }
    assert!(!page.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn lookup_found_redirects_to_the_status_page() {
    let f = fixture().await;
    let (c, csrf) = entry_session(&f.app).await;
    let s = f.id.as_str();
    let grouped = format!("{}+{}-{}", &s[..4], &s[4..8], &s[8..]);
    let r = send(
        &f.app,
        form_post("/lookup", &c, &format!("number={grouped}&csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, header::LOCATION), format!("/c/{}", f.id));
}

#[tokio::test]
async fn lookup_not_found_and_typo_keep_what_was_typed() {
    let f = fixture().await;
    let (c, csrf) = entry_session(&f.app).await;
    let unknown = unknown_number(&f.id);
    let r = send(
        &f.app,
        form_post("/lookup", &c, &format!("number={unknown}&csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = body(r).await;
    assert!(page.contains(r#"<p id="error" class="error""#));
    assert!(page.contains("We could not find a contact with that number"));
    assert!(page.contains(&format!("value=\"{unknown}\"")));

    let bad = typo(&f.id);
    let r = send(
        &f.app,
        form_post("/lookup", &c, &format!("number={bad}&csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = body(r).await;
    assert!(page.contains("check the number"), "{page}");
    assert!(page.contains(&format!("value=\"{bad}\"")));
}

#[tokio::test]
async fn typos_do_not_count_as_failed_lookups() {
    let f = fixture().await;
    let (c, csrf) = entry_session(&f.app).await;
    let bad = typo(&f.id);
    for _ in 0..30 {
        let r = send(
            &f.app,
            form_post("/lookup", &c, &format!("number={bad}&csrf={csrf}")),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = send(
        &f.app,
        form_post("/lookup", &c, &format!("number={}&csrf={csrf}", f.id)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn status_page_says_it_in_plain_words() {
    let f = fixture().await;
    let r = get(&f.app, &format!("/c/{}", f.id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store");
    let page = body(r).await;
    for needle in [
        r#"<p id="position" class="big" aria-live="polite">You are 1st. No one is ahead of you.</p>"#,
        r#"<dd id="wait" aria-live="polite">No agents are available at the moment.</dd>"#,
        r#"<dd id="agent">No agent assigned yet</dd>"#,
        r#"<dd id="queue">Support — English</dd>"#,
        r#"<dd id="media">voice call</dd>"#,
        r#"<dd id="state">Waiting: please stay on the line.</dd>"#,
        r#"<script src="/static/live.js" defer></script>"#,
        &format!(r#"data-events="/c/{}/events""#, f.id),
    ] {
        assert!(page.contains(needle), "{needle} missing in\n{page}");
    }
}

#[tokio::test]
async fn unknown_and_wrong_numbers_look_the_same() {
    let f = fixture().await;
    let unknown = get(&f.app, &format!("/c/{}", unknown_number(&f.id))).await;
    let wrong = get(&f.app, &format!("/c/{}", typo(&f.id))).await;
    let junk = get(&f.app, "/c/not-a-number").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    assert_eq!(junk.status(), StatusCode::NOT_FOUND);
    let (a, b, c) = (body(unknown).await, body(wrong).await, body(junk).await);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(a.contains("Contact not found"));
    // The API too.
    let a = get(&f.app, &format!("/api/contacts/{}", unknown_number(&f.id))).await;
    let b = get(&f.app, &format!("/api/contacts/{}", typo(&f.id))).await;
    assert_eq!(a.status(), StatusCode::NOT_FOUND);
    assert_eq!(b.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header_of(&a, header::CONTENT_TYPE),
        "application/problem+json"
    );
    assert_eq!(body(a).await, body(b).await);
}

/// The caller's link carries a token: opening it is served even from an address whose
/// budget is spent, and the browser that opened it keeps its page's live events; a wrong
/// token, or another browser, is no way round the limit.
#[tokio::test]
async fn a_link_with_its_token_skips_a_spent_budget_and_its_browser_stays_served() {
    let f = fixture().await;
    let unknown = unknown_number(&f.id);
    let get_as = |uri: String, cookie: Option<&str>| {
        let mut b = Request::get(uri);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        let mut r = b.body(Body::empty()).expect("request");
        r.extensions_mut().insert(from("192.0.2.9"));
        r
    };
    for _ in 0..10 {
        let r = send(&f.app, get_as(format!("/c/{unknown}"), None)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = send(&f.app, get_as(format!("/c/{}", f.id), None)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wrong = format!("/c/{}?k=0000000000000000", f.id);
    let r = send(&f.app, get_as(wrong, None)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "a wrong token");
    let token = crate::web::link::LinkKey::fixed(LINK_KEY).token(&f.id);
    let r = send(&f.app, get_as(format!("/c/{}?k={token}", f.id), None)).await;
    assert_eq!(r.status(), StatusCode::OK, "the caller's link");
    let cookie = cookies(&r)
        .first()
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .expect("a session cookie");
    let r = send(&f.app, get_as(format!("/c/{}/events", f.id), Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK, "the page's own live events");
    let r = send(
        &f.app,
        get_as(format!("/api/contacts/{}", f.id), Some(&cookie)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(&f.app, get_as(format!("/c/{}/events", f.id), None)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "another browser");
}

#[tokio::test]
async fn failed_lookups_are_rate_limited_per_client() {
    let f = fixture().await;
    let unknown = unknown_number(&f.id);
    let attempt = |uri: String, ip: &'static str| {
        let mut r = Request::get(uri).body(Body::empty()).expect("request");
        r.extensions_mut().insert(from(ip));
        r
    };
    for _ in 0..10 {
        let r = send(&f.app, attempt(format!("/c/{unknown}"), "192.0.2.1")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Over the limit: 429 with Retry-After, even for a number that exists (not attempted).
    let r = send(&f.app, attempt(format!("/c/{}", f.id), "192.0.2.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_of(&r, header::RETRY_AFTER), "12");
    assert!(body(r).await.contains("Too many attempts"));
    let r = send(
        &f.app,
        attempt(format!("/api/contacts/{}", f.id), "192.0.2.1"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header_of(&r, header::CONTENT_TYPE),
        "application/problem+json"
    );
    let r = send(&f.app, attempt(format!("/c/{}/events", f.id), "192.0.2.1")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // The entry form too.
    let (c, csrf) = entry_session(&f.app).await;
    let mut post = form_post("/lookup", &c, &format!("number={}&csrf={csrf}", f.id));
    post.extensions_mut().insert(from("192.0.2.1"));
    assert_eq!(
        send(&f.app, post).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client (and another /64) is not limited.
    let r = send(&f.app, attempt(format!("/c/{}", f.id), "192.0.2.2")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Successful lookups cost nothing.
    for _ in 0..20 {
        let r = send(&f.app, attempt(format!("/c/{}", f.id), "2001:db8::1")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_token() {
    let f = fixture().await;
    let r = get(&f.app, &format!("/c/{}", f.id)).await;
    let c = cookie(&r);
    let page = body(r).await;
    let good = csrf::token(&SECRET, c.trim_start_matches("hl_session="), f.id.as_str());
    assert!(page.contains(&good) || !page.contains("name=\"csrf\""));
    let uri = format!("/c/{}/actions", f.id);
    let fields = "command_id=abc&version=1&action=cancel_callback";
    // No cookie at all.
    let mut r = form_post(&uri, "", &format!("{fields}&csrf={good}"));
    r.headers_mut().remove(header::COOKIE);
    assert_eq!(send(&f.app, r).await.status(), StatusCode::FORBIDDEN);
    // No token, a forged token, another contact's token.
    let other = csrf::token(
        &SECRET,
        c.trim_start_matches("hl_session="),
        unknown_number(&f.id).as_str(),
    );
    for token in ["", "deadbeef", &"0".repeat(64), &other] {
        let r = send(
            &f.app,
            form_post(&uri, &c, &format!("{fields}&csrf={token}")),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "token {token:?}");
        assert!(body(r).await.contains("did not come from this site"));
    }
    // The entry form too.
    let r = send(
        &f.app,
        form_post("/lookup", &c, &format!("number={}&csrf=nope", f.id)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The API: header missing or wrong.
    for token in [None, Some("0000")] {
        let mut b = Request::post(format!("/api/contacts/{}/actions", f.id))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &c);
        if let Some(t) = token {
            b = b.header("x-csrf-token", t);
        }
        let r = send(
            &f.app,
            b.body(Body::from(
                r#"{"command_id":"a1","action":"cancel_callback"}"#,
            ))
            .expect("request"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn another_sites_origin_is_refused() {
    let f = fixture().await;
    let (c, csrf) = entry_session(&f.app).await;
    let body_text = format!("number={}&csrf={csrf}", f.id);
    for bad in [
        "http://evil.example",
        "null",
        "https://gateway.test.evil.example",
    ] {
        let mut r = form_post("/lookup", &c, &body_text);
        r.headers_mut()
            .insert(header::ORIGIN, bad.parse().expect("header"));
        assert_eq!(
            send(&f.app, r).await.status(),
            StatusCode::FORBIDDEN,
            "{bad}"
        );
    }
    let mut r = form_post("/lookup", &c, &body_text);
    r.headers_mut().insert(
        header::ORIGIN,
        "http://gateway.test".parse().expect("header"),
    );
    assert_eq!(send(&f.app, r).await.status(), StatusCode::SEE_OTHER);
    // No Origin at all is allowed (older browsers; the token still guards).
    let r = form_post("/lookup", &c, &body_text);
    assert_eq!(send(&f.app, r).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let f = fixture().await;
    for uri in [
        "/".to_owned(),
        format!("/c/{}", f.id),
        format!("/c/{}", typo(&f.id)),
        format!("/api/contacts/{}", f.id),
        "/nowhere".to_owned(),
        "/static/live.js".to_owned(),
        "/healthz".to_owned(),
    ] {
        let r = get(&f.app, &uri).await;
        assert_eq!(header_of(&r, header::CONTENT_SECURITY_POLICY), CSP, "{uri}");
        assert_eq!(header_of(&r, header::X_FRAME_OPTIONS), "DENY", "{uri}");
        assert_eq!(
            header_of(&r, header::REFERRER_POLICY),
            "same-origin",
            "{uri}"
        );
        assert_eq!(
            header_of(&r, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff",
            "{uri}"
        );
        if !uri.starts_with("/static/") {
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store", "{uri}");
        }
    }
    let r = get(&f.app, "/static/live.js").await;
    assert!(header_of(&r, header::CONTENT_TYPE).starts_with("text/javascript"));
    assert!(body(r).await.contains("EventSource"));
}

#[tokio::test]
async fn api_get_returns_the_status_json_with_a_csrf_token() {
    let f = fixture().await;
    let r = get(&f.app, &format!("/api/contacts/{}", f.id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header_of(&r, header::CONTENT_TYPE).starts_with("application/json"));
    let c = cookie(&r);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
    assert_eq!(v["id"], f.id.as_str());
    assert_eq!(v["queue"], "support");
    assert_eq!(v["position"], 1);
    assert_eq!(v["ahead"], 0);
    assert_eq!(v["state"]["state"], "queued");
    assert_eq!(v["estimate"]["kind"], "no_agents");
    assert!(v["version"].is_u64());
    assert!(v["options"].is_array());
    assert_eq!(
        v["display"]["position"],
        "You are 1st. No one is ahead of you."
    );
    assert_eq!(
        v["csrf"],
        csrf::token(&SECRET, c.trim_start_matches("hl_session="), f.id.as_str())
    );
}

async fn next_chunk(s: &mut axum::body::BodyDataStream) -> String {
    let fut = futures_util::StreamExt::next(s);
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), fut)
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("chunk");
    String::from_utf8(chunk.to_vec()).expect("utf-8")
}

#[tokio::test]
async fn events_send_the_status_first_and_again_on_change() {
    let f = fixture().await;
    let r = get(&f.app, &format!("/api/contacts/{}/events", f.id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "text/event-stream");
    let mut stream = r.into_body().into_data_stream();
    let first = next_chunk(&mut stream).await;
    assert!(first.starts_with("event: status\ndata: {"), "{first}");
    assert!(first.contains("You are 1st."));
    // The caller hangs up: the contact ends, and the stream says so.
    f.centre
        .end(f.id.clone(), EndReason::Abandoned)
        .await
        .expect("ended");
    let second = next_chunk(&mut stream).await;
    assert!(second.contains(r#""state":"ended""#), "{second}");
    assert!(second.contains("You are no longer in the queue."));
}

#[tokio::test]
async fn a_page_behind_a_change_hears_it_and_the_page_ahead_does_not() {
    // The view rings bells after releasing its write lock (`ViewWrite`): the pages behind
    // a change must still hear it, and only they.
    let f = fixture().await;
    let admit = |n: u32| NewContact {
        queue: QueueId("support".into()),
        media: MediaType::Voice,
        caller: format!("sip:caller{n}@example.com"),
        call_ref: format!("call-behind-{n}"),
    };
    let second = f.centre.admit(admit(2)).await.expect("admitted").id;
    let third = f.centre.admit(admit(3)).await.expect("admitted").id;
    let open = |id: &ContactId| {
        let app = f.app.clone();
        let path = format!("/api/contacts/{id}/events");
        async move {
            let r = get(&app, &path).await;
            assert_eq!(r.status(), StatusCode::OK);
            r.into_body().into_data_stream()
        }
    };
    let mut first_page = open(&f.id).await;
    let mut third_page = open(&third).await;
    assert!(next_chunk(&mut first_page).await.contains("You are 1st."));
    assert!(next_chunk(&mut third_page).await.contains("You are 3rd."));
    // The second caller hangs up: the third moves up, the first stays where it was.
    f.centre
        .end(second, EndReason::Abandoned)
        .await
        .expect("ended");
    let moved = next_chunk(&mut third_page).await;
    assert!(moved.contains("You are 2nd."), "{moved}");
    // The first page's next event is its own end: nothing came for the change behind it.
    f.centre
        .end(f.id.clone(), EndReason::Abandoned)
        .await
        .expect("ended");
    let next = next_chunk(&mut first_page).await;
    assert!(next.contains(r#""state":"ended""#), "{next}");
}

#[tokio::test]
async fn a_web_side_invalid_field_is_422_with_the_message() {
    let f = fixture().await;
    let r = get(&f.app, &format!("/c/{}", f.id)).await;
    let c = cookie(&r);
    let token = csrf::token(&SECRET, c.trim_start_matches("hl_session="), f.id.as_str());
    let r = send(
        &f.app,
        form_post(
            &format!("/c/{}/actions", f.id),
            &c,
            &format!("csrf={token}&command_id=x1&version=1&action=callback&number=call+me"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body(r).await.contains("Enter a phone number"));
}

fn rendered(status: &ContactStatus, view: View) -> String {
    StatusPage::build(&SECRET, "session", status, view)
        .render()
        .expect("renders")
}

fn all_options(mut s: ContactStatus) -> ContactStatus {
    s.options = vec![
        ActionKind::MoveQueue,
        ActionKind::Callback,
        ActionKind::Email,
        ActionKind::WebForm,
    ];
    s.move_targets = vec![MoveTarget {
        queue: QueueId("sales".into()),
        name: "Sales".into(),
        skillset: "Sales — English".into(),
        position: 1,
        estimate: WaitEstimate::Range {
            low_secs: 120,
            high_secs: 180,
            expected_secs: 150,
            learning: false,
        },
        remote: false,
    }];
    s
}

#[test]
fn a_queued_page_offers_its_controls() {
    let page = rendered(&all_options(hand_status(3, 2)), View::default());
    for needle in [
        "You are 3rd. 2 callers are ahead of you.",
        "about 4 to 6 minutes",
        r#"<form id="move-form""#,
        r#"<select id="move-to" name="to">"#,
        r#"<option value="sales">Sales — English: about 2 to 3 minutes (you would be 1st)</option>"#,
        r#"<form id="callback-form""#,
        // The caller's own number is never shown in full: an empty field means "mine".
        r#"id="callback-number" name="number" type="tel" autocomplete="tel" maxlength="32" value="""#,
        "the number you are calling from (number ending 7890)",
        r#"<form id="email-form""#,
        r#"<form id="webform-form""#,
        r#"name="version" value="4""#,
        r#"name="action" value="web_form""#,
    ] {
        assert!(page.contains(needle), "{needle} missing in\n{page}");
    }
    assert!(!page.contains("cancel-callback-form"));
    assert!(
        !page.contains("+441234567890"),
        "the caller's number leaked"
    );
    // Every form has its own fresh command id.
    let ids: std::collections::HashSet<_> = page
        .match_indices("name=\"command_id\" value=\"")
        .map(|(i, m)| &page[i + m.len()..i + m.len() + 22])
        .collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn an_invalid_form_keeps_what_was_typed_next_to_the_error() {
    let typed = forms::ActionForm {
        action: Some("email".into()),
        subject: Some("My <b>bill</b>".into()),
        message: Some("It is wrong".into()),
        reply_to: Some("nope".into()),
        ..Default::default()
    };
    let view = View {
        typed: Some((
            Some(ActionKind::Email),
            typed,
            forms::FieldError::new("reply_to", "Enter an email address like name@example.com."),
        )),
        ..View::default()
    };
    let page = rendered(&all_options(hand_status(1, 0)), view);
    assert!(page.contains(
        r#"<p id="error-reply_to" class="error" role="alert">Enter an email address like name@example.com.</p>"#
    ));
    assert!(
        page.contains("My &#60;b&#62;bill&#60;/b&#62;")
            || page.contains("My &lt;b&gt;bill&lt;/b&gt;"),
        "escaped"
    );
    assert!(page.contains(">It is wrong</textarea>"));
    assert!(page.contains(r#"value="nope""#));
    assert_eq!(page.matches("class=\"error\"").count(), 1);
}

#[test]
fn a_pending_callback_page_offers_cancel_and_change() {
    let mut s = hand_status(2, 1);
    s.live_call = false;
    s.media = MediaType::Callback;
    s.substitute = Some(Substitute::Callback {
        number: "+441111".into(),
        window: Some(crate::centre::Window {
            not_before: Timestamp(1_764_000_000_000),
            not_after: Timestamp(1_764_003_600_000),
        }),
    });
    s.options = vec![ActionKind::CancelCallback, ActionKind::ChangeCallback];
    let page = rendered(&s, View::default());
    assert!(page.contains(r#"<dd id="media">call-back</dd>"#));
    assert!(page.contains("we will call you back on the number ending 1111 between"));
    assert!(page.contains("Leave empty to keep the number ending 1111."));
    assert!(!page.contains("+441111"), "the call-back number leaked");
    // Cancelling is a link to a page that asks, not a button that cancels.
    assert!(page.contains(r#"<a id="cancel-callback-link""#));
    assert!(!page.contains(r#"id="cancel-callback-form""#));
    assert!(page.contains(r#"<form id="change-callback-form""#));
    assert!(page.contains(r#"value="2025-11-24T16:00""#));
    assert!(!page.contains("callback-form\" method") || page.contains("change-callback-form"));
    assert!(!page.contains(r#"<form id="callback-form""#));
    // The cancel page says what is lost, and only it has the (red) button that cancels.
    let ask = rendered(
        &s,
        View {
            only: Some(ActionKind::CancelCallback),
            ..View::default()
        },
    );
    assert!(ask.contains("Cancel your call-back?"), "{ask}");
    assert!(
        ask.contains("you lose your place in the queue (you are 2nd now)"),
        "{ask}"
    );
    assert!(ask.contains(r#"<button id="cancel-callback-submit" class="danger""#));
    assert!(ask.contains(r#"<a id="keep-callback""#));
    assert!(
        !ask.contains(r#"id="change-callback-form""#),
        "only the one control"
    );
    assert!(
        !ask.contains("http-equiv=\"refresh\""),
        "a form page never reloads itself"
    );
}

#[test]
fn without_javascript_the_reloading_can_be_stopped_and_started_again() {
    let on = rendered(&all_options(hand_status(1, 0)), View::default());
    assert!(on.contains(r#"<a id="refresh-off" href="?updates=off">stop updating it</a>"#));
    let off = rendered(
        &all_options(hand_status(1, 0)),
        View {
            updates_off: true,
            ..View::default()
        },
    );
    assert!(!off.contains("http-equiv=\"refresh\""), "stopped");
    assert!(off.contains("This page does not update itself."));
    assert!(
        off.contains(r#"<a id="refresh-now" href="?updates=off">"#),
        "stays stopped"
    );
    assert!(
        off.contains(r#"<a id="refresh-on" href="/c/"#),
        "can start again"
    );
    assert!(super::pages::updates_off(Some("k=abc&updates=off")));
    assert!(!super::pages::updates_off(Some("updates=offx")));
    assert!(!super::pages::updates_off(None));
}

#[test]
fn without_javascript_the_page_reloads_itself_and_forms_are_pages_of_their_own() {
    let page = rendered(&all_options(hand_status(1, 0)), View::default());
    assert!(page.contains(r#"<noscript><meta http-equiv="refresh" content="20"></noscript>"#));
    // Each form is inline for scripts only; without them a link leads to its page.
    for (form, link) in [
        ("move-form", "/form/move_queue"),
        ("callback-form", "/form/callback"),
        ("email-form", "/form/email"),
        ("webform-form", "/form/web_form"),
    ] {
        assert!(page.contains(&format!(r#"<form id="{form}""#)), "{form}");
        let tag = page.split(&format!(r#"<form id="{form}""#)).nth(1).unwrap();
        let tag = tag.split('>').next().unwrap();
        assert!(tag.contains("data-js-form hidden"), "{form}: {tag}");
        assert!(page.contains(link), "{link}");
    }
    // The call-back hint is always there for aria-describedby, and the zone is named.
    assert!(page.contains(r#"<p id="callback-hint" class="hint">"#));
    assert!(page.contains("(optional, <span class=\"tz-label\">our time, UTC</span>)"));
    assert!(page.contains(r#"<input type="hidden" name="tz" value="UTC">"#));
    // A form on its own page: shown, no reload, a way back.
    let only = rendered(
        &all_options(hand_status(1, 0)),
        View {
            only: Some(ActionKind::Callback),
            ..View::default()
        },
    );
    assert!(!only.contains("http-equiv"), "{only}");
    assert!(only.contains(r#"<form id="callback-form" data-kind="callback" method="post" action"#));
    assert!(!only.contains("data-js-form"));
    assert!(!only.contains(r#"id="email-form""#));
    assert!(only.contains(r#"<a id="back""#));
    // An ended contact does not reload and has no controls, nor "no agent yet".
    let mut s = hand_status(1, 0);
    s.position = None;
    s.options = vec![];
    s.state = ContactState::Ended {
        at: Timestamp(0),
        reason: EndReason::Completed,
    };
    let ended = rendered(&s, View::default());
    assert!(!ended.contains("http-equiv"));
    assert!(
        ended.contains(r#"<dd id="agent">None: this contact has ended</dd>"#),
        "{ended}"
    );
}

#[test]
fn a_refused_form_comes_back_alone_with_a_summary_first_in_the_callers_zone() {
    let typed = forms::ActionForm {
        action: Some("callback".into()),
        number: Some("call me".into()),
        not_before: Some("2026-11-24T10:00".into()),
        not_after: Some("2026-11-24T12:00".into()),
        ..forms::ActionForm::default()
    };
    let zone = crate::web::zone::Zone::callers("Europe/Paris").expect("Paris");
    let view = View {
        typed: Some((
            Some(ActionKind::Callback),
            typed,
            forms::FieldError::new("number", "Enter a phone number."),
        )),
        only: Some(ActionKind::Callback),
        zone,
        ..View::default()
    };
    let page = rendered(&all_options(hand_status(1, 0)), view);
    let summary = page.find(r#"id="error-summary""#).expect("a summary");
    assert!(
        summary < page.find("<h1>").unwrap(),
        "the summary comes first"
    );
    assert!(page.contains(r#"tabindex="-1" autofocus"#));
    assert!(page.contains(
        r##"<a id="error-summary-link" href="#callback-number">Enter a phone number.</a>"##
    ));
    assert!(page.contains("<title>Error: "));
    assert!(page.contains("your time, Europe/Paris"));
    assert!(page.contains(r#"name="tz" value="Europe/Paris""#));
    assert!(
        page.contains(r#"value="2026-11-24T10:00""#),
        "typed times kept as typed"
    );
}

#[test]
fn a_call_back_window_is_shown_in_the_callers_zone() {
    let mut s = hand_status(2, 1);
    s.live_call = false;
    s.media = MediaType::Callback;
    s.substitute = Some(Substitute::Callback {
        number: "+441111".into(),
        window: Some(crate::centre::Window {
            not_before: Timestamp(1_764_000_000_000),
            not_after: Timestamp(1_764_003_600_000),
        }),
    });
    s.options = vec![ActionKind::CancelCallback, ActionKind::ChangeCallback];
    let view = View {
        zone: crate::web::zone::Zone::callers("America/New_York").expect("New York"),
        ..View::default()
    };
    let page = rendered(&s, view);
    // 16:00 UTC is 11:00 in New York in November.
    assert!(
        page.contains("between 2025-11-24 11:00 EST and 2025-11-24 12:00 EST"),
        "{page}"
    );
    assert!(page.contains(r#"value="2025-11-24T11:00""#));
}

#[test]
fn disconnected_and_ended_pages_say_what_happened() {
    let mut s = hand_status(2, 1);
    s.live_call = false;
    s.state = ContactState::Disconnected {
        since: Timestamp(0),
        until: Timestamp(600_000),
    };
    s.options = vec![ActionKind::Callback];
    let page = rendered(&s, View::default());
    assert!(page.contains("Disconnected: your call ended."));
    assert!(page.contains(r#"<form id="callback-form""#));

    let mut s = hand_status(1, 0);
    s.position = None;
    s.options = vec![];
    s.state = ContactState::Ended {
        at: Timestamp(0),
        reason: EndReason::Lost,
    };
    let page = rendered(&s, View::default());
    assert!(page.contains("You are no longer in the queue."));
    assert!(page.contains("Ended at 1970-01-01 00:00 UTC: the call was lost and the time"));
    assert!(!page.contains("<form"));
}

#[test]
fn paths_are_redacted_for_logs() {
    let id: ContactId = "000000000000".parse().expect("valid");
    assert_eq!(
        redact_path(&format!("/c/{id}/actions")),
        "/c/*********000/actions"
    );
    assert_eq!(redact_path("/c/123456789/x"), "/c/*********/x");
}

/// Success paths of the controls, through `CentreHandle::command`.
mod commands {
    use super::*;

    async fn page_token(f: &Fixture) -> (String, String, String) {
        let r = get(&f.app, &format!("/c/{}", f.id)).await;
        let c = cookie(&r);
        let page = body(r).await;
        let token = csrf::token(&SECRET, c.trim_start_matches("hl_session="), f.id.as_str());
        (c, token, page)
    }

    #[tokio::test]
    async fn a_callback_redirects_to_a_confirmation() {
        let f = fixture().await;
        let (c, token, page) = page_token(&f).await;
        assert!(
            page.contains(r#"<form id="callback-form""#),
            "callback offered"
        );
        let version = field(&page, "version");
        let r = send(
            &f.app,
            form_post(
                &format!("/c/{}/actions", f.id),
                &c,
                &format!(
                    "csrf={token}&command_id=cb1&version={version}&action=callback&number=%2B441234567"
                ),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = header_of(&r, header::LOCATION);
        assert_eq!(to, format!("/c/{}/done/cb1", f.id));
        let done = get(&f.app, &to).await;
        assert_eq!(done.status(), StatusCode::OK);
        let page = body(done).await;
        assert!(page.contains(r#"<p id="confirmation""#));
        assert!(page.contains("Call-back booked: we will call you back on the number ending 4567"));
        assert!(page.contains(r#"<dd id="media">call-back</dd>"#));
    }

    #[tokio::test]
    async fn a_window_typed_in_the_callers_zone_is_booked_in_it_and_the_form_has_its_page() {
        let f = fixture().await;
        let (c, token, page) = page_token(&f).await;
        // The call-back form's page of its own (for browsers without JavaScript).
        let r = send(
            &f.app,
            Request::get(format!("/c/{}/form/callback", f.id))
                .header(header::COOKIE, &c)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let alone = body(r).await;
        assert!(alone.contains(r#"<form id="callback-form" data-kind="callback""#));
        assert!(!alone.contains(r#"id="email-form""#));
        // A control not offered, or no such control: back to the status page / not found.
        let r = get(&f.app, &format!("/c/{}/form/cancel_callback", f.id)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            get(&f.app, &format!("/c/{}/form/fax", f.id)).await.status(),
            StatusCode::NOT_FOUND
        );
        let version = field(&page, "version");
        // A window from an hour to three hours from now, typed as a Paris clock shows it.
        let paris = crate::web::zone::Zone::callers("Europe/Paris").expect("Paris");
        let from = Timestamp::now_wall().plus_secs(3600);
        let until = from.plus_secs(7200);
        let (typed_from, typed_until) = (paris.datetime_local(from), paris.datetime_local(until));
        let r = send(
            &f.app,
            form_post(
                &format!("/c/{}/actions", f.id),
                &c,
                &format!(
                    "csrf={token}&command_id=tz1&version={version}&action=callback&number=%2B441234567&tz=Europe%2FParis&not_before={}&not_after={}",
                    typed_from.replace(':', "%3A"),
                    typed_until.replace(':', "%3A")
                ),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", body(r).await);
        let status = f.centre.status(f.id.clone()).await.expect("status");
        let Some(Substitute::Callback {
            window: Some(w), ..
        }) = status.substitute
        else {
            panic!("a window: {:?}", status.substitute);
        };
        // Read as Paris time, not UTC (to the minute the form has).
        assert_eq!(w.not_before.0 / 60_000, from.0 / 60_000);
        assert_eq!(w.not_after.0 / 60_000, until.0 / 60_000);
        // The browser's cookie names its zone: the page shows the window in it.
        let r = send(
            &f.app,
            Request::get(format!("/c/{}", f.id))
                .header(header::COOKIE, format!("{c}; hl_tz=Europe%2FParis"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let page = body(r).await;
        let shown = format!(" between {} and {}", paris.time(from), paris.time(until));
        assert!(page.contains(&shown), "{shown} in {page}");
        assert!(page.contains("your time, Europe/Paris"));
        // The cancel page asks first, and says what is lost.
        let r = send(
            &f.app,
            Request::get(format!("/c/{}/form/cancel_callback", f.id))
                .header(header::COOKIE, &c)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let ask = body(r).await;
        assert!(ask.contains("you lose your place in the queue"), "{ask}");
    }

    #[tokio::test]
    async fn a_stale_page_gets_409_with_the_notice() {
        let f = fixture().await;
        let (c, token, _) = page_token(&f).await;
        let r = send(
            &f.app,
            form_post(
                &format!("/c/{}/actions", f.id),
                &c,
                &format!(
                    "csrf={token}&command_id=s1&version=9999&action=callback&number=%2B441234567"
                ),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert!(body(r).await.contains(r#"<p id="notice""#));
    }

    #[tokio::test]
    async fn the_api_books_a_callback_and_returns_the_new_status() {
        let f = fixture().await;
        let r = get(&f.app, &format!("/api/contacts/{}", f.id)).await;
        let c = cookie(&r);
        let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
        let r = send(
            &f.app,
            Request::post(format!("/api/contacts/{}/actions", f.id))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &c)
                .header("x-csrf-token", v["csrf"].as_str().expect("csrf"))
                .body(Body::from(format!(
                    r#"{{"command_id":"api1","version":{},"action":"callback","number":"+441234567","window":null}}"#,
                    v["version"]
                )))
                .expect("request"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
        assert_eq!(v["confirmation"]["done"], "callback_booked");
        assert_eq!(v["status"]["media"], "callback");
    }

    #[tokio::test]
    async fn the_same_command_id_twice_changes_nothing_more() {
        let f = fixture().await;
        let (c, token, _) = page_token(&f).await;
        let post = || {
            form_post(
                &format!("/c/{}/actions", f.id),
                &c,
                &format!("csrf={token}&command_id=twice&action=callback&number=%2B441234567"),
            )
        };
        assert_eq!(send(&f.app, post()).await.status(), StatusCode::SEE_OTHER);
        assert_eq!(send(&f.app, post()).await.status(), StatusCode::SEE_OTHER);
    }
}

#[tokio::test]
async fn api_input_errors_are_problems_and_bodies_are_bounded() {
    let f = fixture().await;
    let r = get(&f.app, &format!("/api/contacts/{}", f.id)).await;
    let c = cookie(&r);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
    let token = v["csrf"].as_str().expect("csrf").to_owned();
    let post = |json: String| {
        Request::post(format!("/api/contacts/{}/actions", f.id))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &c)
            .header("x-csrf-token", &token)
            .body(Body::from(json))
            .expect("request")
    };
    let r = send(&f.app, post(r#"{"command_id":"a","action":"fax"}"#.into())).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header_of(&r, header::CONTENT_TYPE),
        "application/problem+json"
    );
    let r = send(
        &f.app,
        post(
            r#"{"command_id":"a","action":"email","subject":"s","message":"m","reply_to":"x"}"#
                .into(),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
    assert_eq!(v["field"], "reply_to");
    assert_eq!(v["status"], 422);
    assert_eq!(v["type"], "/problems/invalid");
    let r = send(
        &f.app,
        post(format!(
            r#"{{"command_id":"a","action":"email","subject":"s","message":"{}","reply_to":"a@b.c"}}"#,
            "m".repeat(BODY_LIMIT)
        )),
    )
    .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Until the centre side lands, a valid command is refused as unavailable (503), never
    // with internals.
    let r = send(
        &f.app,
        post(r#"{"command_id":"a","action":"cancel_callback"}"#.into()),
    )
    .await;
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        let text = body(r).await;
        assert!(text.contains("/problems/unavailable"), "{text}");
        assert!(!text.contains("shutting"), "{text}");
    }
}

#[tokio::test]
async fn an_oversized_form_is_refused() {
    let f = fixture().await;
    let (c, csrf) = entry_session(&f.app).await;
    let r = send(
        &f.app,
        form_post(
            "/lookup",
            &c,
            &format!("csrf={csrf}&number={}", "1".repeat(BODY_LIMIT + 1)),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn event_streams_end_when_the_server_stops() {
    let f = fixture().await;
    let stop = CancellationToken::new();
    let app = router(WebState {
        centre: f.centre.clone(),
        secret: SECRET,
        limits: RateLimits::default(),
        shutdown: stop.clone(),
        agents: Vec::new(),
        link_key: crate::web::link::LinkKey::random(),
        sip_address: String::new(),
        phones: None,
        zone: crate::web::zone::Zone::utc(),
        supervision: Default::default(),
        chat_idle_secs: 60,
    });
    let r = get(&app, &format!("/c/{}/events", f.id)).await;
    let mut stream = r.into_body().into_data_stream();
    assert!(next_chunk(&mut stream).await.contains("event: status"));
    stop.cancel();
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures_util::StreamExt::next(&mut stream),
    )
    .await
    .expect("ends in time");
    assert!(end.is_none(), "stream ended");
}

// --- agent console, agent API, metrics ------------------------------------------------

const ADA_PASSWORD: &str = "ada-secret-1";

/// A centre with one agent, Ada (support and sales, reached by REGISTER), and one
/// caller parked in support.
async fn agent_fixture() -> Fixture {
    agent_fixture_with(config()).await
}

async fn agent_fixture_with(cfg: CentreConfig) -> Fixture {
    agent_fixture_phones(cfg, None).await
}

async fn agent_fixture_phones(mut cfg: CentreConfig, phones: Option<PhoneLookup>) -> Fixture {
    let token = CancellationToken::new();
    cfg.agents = vec![centre::AgentSpec {
        id: centre::AgentId("ada".into()),
        name: "Ada Lovelace".into(),
        skills: vec![(QueueId("support".into()), 5), (QueueId("sales".into()), 3)],
        reach: centre::Reach::Registered,
    }];
    let (centre, _thread) =
        centre::spawn(cfg, Box::new(MemoryStore::new()), token.clone()).expect("centre");
    let status = centre
        .admit(NewContact {
            queue: QueueId("support".into()),
            media: MediaType::Voice,
            caller: "sip:+441234567890@example.com".into(),
            call_ref: "call-1".into(),
        })
        .await
        .expect("admitted");
    let app = router(WebState {
        centre: centre.clone(),
        secret: SECRET,
        limits: RateLimits::default(),
        shutdown: CancellationToken::new(),
        agents: vec![AgentAccount {
            id: centre::AgentId("ada".into()),
            name: "Ada Lovelace".into(),
            password: ADA_PASSWORD.into(),
        }],
        link_key: crate::web::link::LinkKey::random(),
        sip_address: "192.0.2.1:5060".into(),
        phones,
        zone: crate::web::zone::Zone::utc(),
        supervision: Default::default(),
        chat_idle_secs: 60,
    });
    Fixture {
        app,
        centre,
        id: status.id,
        _token: token,
    }
}

#[tokio::test]
async fn ready_without_a_registered_phone_says_so_with_help() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let registered = Arc::new(AtomicBool::new(false));
    let flag = registered.clone();
    let lookup: PhoneLookup = Arc::new(move |_agent: String| {
        let phone = if flag.load(Ordering::SeqCst) {
            Phone::Registered("sip:ada@192.0.2.7:5062".into())
        } else {
            Phone::NotRegistered
        };
        Box::pin(async move { phone })
    });
    let f = agent_fixture_phones(config(), Some(lookup)).await;
    let (_, jar) = console_login(&f, ADA_PASSWORD, "192.0.2.20").await;
    // The API says whether a call can ring the agent.
    let basic = [("authorization", "Basic YWRhOmFkYS1zZWNyZXQtMQ==")]; // ada:ada-secret-1
    let me = json_of(send(&f.app, api("GET", "/api/agent/me", &basic, None)).await).await;
    assert_eq!(me["phone"], "not_registered", "{me}");
    // Ready works (emails and web forms need no phone) and the console says at once that
    // calls cannot ring, with how to register the phone, instead of a redirect.
    let r = press(&f, &jar, "ready", "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = body(r).await;
    assert!(page.contains("your phone is not registered"), "{page}");
    assert!(page.contains(r#"id="phone-help""#), "{page}");
    assert!(page.contains(r#"<span id="phone-server">192.0.2.1:5060</span>"#));
    // The parked caller was offered; the call layer finds no phone to ring.
    f.centre
        .offer_failed(
            centre::AgentId("ada".into()),
            centre::PHONE_NOT_REGISTERED.into(),
        )
        .await
        .expect("failed");
    // Once it registers: a plain redirect, and the API says so.
    registered.store(true, Ordering::SeqCst);
    let r = press(&f, &jar, "ready", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let me = json_of(send(&f.app, api("GET", "/api/agent/me", &basic, None)).await).await;
    assert_eq!(me["phone"], "registered", "{me}");
}

fn agent_state(f: &Fixture) -> centre::AgentState {
    f.centre.snapshots().borrow().agents[0].state.clone()
}

/// Every `name=value` cookie a response sets, joined for a `Cookie` header.
fn cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

fn from_ip(mut r: Request<Body>, ip: &str) -> Request<Body> {
    r.extensions_mut().insert(from(ip));
    r
}

/// Logs Ada in through the console form; returns the Cookie header for /agent pages.
async fn console_login(f: &Fixture, password: &str, ip: &str) -> (Response, String) {
    let r = get(&f.app, "/agent").await;
    assert_eq!(r.status(), StatusCode::OK);
    let session = cookie(&r);
    let csrf = field(&body(r).await, "csrf");
    let r = send(
        &f.app,
        from_ip(
            form_post(
                "/agent/login",
                &session,
                &format!("agent=ada&password={password}&csrf={csrf}"),
            ),
            ip,
        ),
    )
    .await;
    let agent_cookie = cookies(&r)
        .iter()
        .find(|c| c.starts_with("hl_agent="))
        .map(|c| c.split(';').next().unwrap_or("").to_owned());
    let jar = match agent_cookie {
        Some(a) => format!("{session}; {a}"),
        None => session,
    };
    (r, jar)
}

async fn console(f: &Fixture, jar: &str) -> (StatusCode, String) {
    let r = send(
        &f.app,
        Request::get("/agent/console")
            .header(header::COOKIE, jar)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    (r.status(), body(r).await)
}

/// Presses a console button (with the page's CSRF token).
async fn press(f: &Fixture, jar: &str, action: &str, extra: &str) -> Response {
    let (_, page) = console(f, jar).await;
    let csrf = field(&page, "csrf");
    send(
        &f.app,
        form_post(
            "/agent/console",
            jar,
            &format!("action={action}&csrf={csrf}{extra}"),
        ),
    )
    .await
}

async fn leave_email(f: &Fixture) {
    f.centre
        .command(centre::CommandRequest {
            id: centre::CommandId("email-1".into()),
            contact: f.id.clone(),
            expected_version: None,
            command: centre::Command::Email {
                subject: "Router keeps <rebooting>".into(),
                message: "Every ten minutes\nsince the update.".into(),
                reply_to: "caller@example.org".into(),
            },
        })
        .await
        .expect("email queued");
}

#[tokio::test]
async fn agent_login_sets_a_strict_cookie_and_shows_the_console() {
    let f = agent_fixture().await;
    let (r, jar) = console_login(&f, ADA_PASSWORD, "192.0.2.7").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, header::LOCATION), "/agent/console");
    let set = cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("hl_agent="))
        .expect("agent cookie");
    assert!(
        set.contains("; HttpOnly; SameSite=Strict; Path=/agent;"),
        "{set}"
    );
    assert!(agent_state(&f).is_logged_in(), "logged in at the centre");
    let (status, page) = console(&f, &jar).await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "Ada Lovelace",
        "Not ready (logged in)",
        r#"<button id="ready" type="submit">"#,
        r#"<button id="logout" type="submit">"#,
        "Support — English: <span class=\"waiting\">1</span> waiting",
        r#"data-events="/agent/console/events""#,
        r#"<script src="/static/agent.js" defer>"#,
    ] {
        assert!(page.contains(needle), "{needle} missing:\n{page}");
    }
    assert!(!page.contains("<script>"), "no inline script");
    // Without a cookie the console sends you to the login.
    let (status, _) = console(&f, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The live part is served as events.
    let r = send(
        &f.app,
        Request::get("/agent/console/events")
            .header(header::COOKIE, &jar)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut stream = r.into_body().into_data_stream();
    let first = next_chunk(&mut stream).await;
    assert!(first.contains("event: console"), "{first}");
    assert!(first.contains("Not ready (logged in)"), "{first}");
}

#[tokio::test]
async fn bad_agent_logins_are_refused_then_rate_limited() {
    let f = agent_fixture().await;
    for _ in 0..10 {
        let (r, _) = console_login(&f, "wrong-password", "192.0.2.8").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(cookies(&r).iter().all(|c| !c.starts_with("hl_agent=")));
        assert!(body(r).await.contains("do not match"));
    }
    // Over the budget: even the right password is not tried.
    let (r, _) = console_login(&f, ADA_PASSWORD, "192.0.2.8").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!header_of(&r, header::RETRY_AFTER).is_empty());
    // Basic auth from there counts against the same budget.
    let basic = from_ip(
        Request::get("/api/agent/me")
            .header(header::AUTHORIZATION, "Basic YWRhOmFkYS1zZWNyZXQtMQ==")
            .body(Body::empty())
            .expect("request"),
        "192.0.2.8",
    );
    let r = send(&f.app, basic).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header_of(&r, header::CONTENT_TYPE),
        "application/problem+json"
    );
    // Another client is not affected.
    let (r, _) = console_login(&f, ADA_PASSWORD, "192.0.2.9").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A login form without its CSRF token is refused before the password is looked at.
    let r = send(
        &f.app,
        form_post(
            "/agent/login",
            "",
            &format!("agent=ada&password={ADA_PASSWORD}"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn console_ready_not_ready_and_logout() {
    let f = agent_fixture().await;
    let (_, jar) = console_login(&f, ADA_PASSWORD, "192.0.2.10").await;
    // Not ready with a reason from the list.
    let r = press(&f, &jar, "ready", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The parked voice caller is offered at once (the call layer would ring Ada's phone).
    assert!(matches!(
        agent_state(&f),
        centre::AgentState::Reserved { .. }
    ));
    let (_, page) = console(&f, &jar).await;
    assert!(page.contains("Call offered to you"), "{page}");
    assert!(page.contains(f.id.as_str()));
    assert!(
        page.contains("+441234567890"),
        "the agent sees the caller's number"
    );
    assert!(!page.contains(r#"id="logout""#), "no logout with a contact");
    // The caller's page names the agent.
    let caller = body(get(&f.app, &format!("/c/{}", f.id)).await).await;
    assert!(
        caller.contains("Being connected to Ada Lovelace"),
        "{caller}"
    );
    // The offer fails (as the call layer reports it): not ready, no answer.
    f.centre
        .offer_failed(centre::AgentId("ada".into()), "no answer".into())
        .await
        .expect("failed");
    let (_, page) = console(&f, &jar).await;
    assert!(page.contains("Not ready (no answer)"), "{page}");
    assert!(!page.contains(r#"id="phone-help""#), "{page}");
    // Ready again, and this time the phone is not registered: the console says so and
    // how to register it, instead of a bare "no answer".
    press(&f, &jar, "ready", "").await;
    f.centre
        .offer_failed(
            centre::AgentId("ada".into()),
            centre::PHONE_NOT_REGISTERED.into(),
        )
        .await
        .expect("failed");
    let (_, page) = console(&f, &jar).await;
    assert!(page.contains("Not ready (phone not registered)"), "{page}");
    assert!(page.contains(r#"id="phone-help""#), "{page}");
    assert!(page.contains("Your phone is not registered"), "{page}");
    assert!(
        page.contains(r#"<span id="phone-server">192.0.2.1:5060</span>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<span id="phone-user">ada</span>"#),
        "{page}"
    );
    let r = press(&f, &jar, "not_ready", "&reason=lunch").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        agent_state(&f),
        centre::AgentState::NotReady {
            reason: "lunch".into()
        }
    );
    let (_, page) = console(&f, &jar).await;
    assert!(page.contains("Not ready (lunch)"), "{page}");
    // A button the state does not allow answers 409 with the console and why.
    let r = press(&f, &jar, "done", "").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(body(r).await.contains(r#"id="notice""#));
    // A second browser (or a stolen cookie) holding a session from before the logout.
    let (_, other) = console_login(&f, ADA_PASSWORD, "192.0.2.12").await;
    assert_eq!(console(&f, &other).await.0, StatusCode::OK);
    // Log out: the cookie is cleared and the agent is logged out at the centre.
    let r = press(&f, &jar, "logout", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, header::LOCATION), "/agent");
    assert!(
        cookies(&r)
            .iter()
            .any(|c| c.starts_with("hl_agent=;") && c.contains("Max-Age=0")),
        "{:?}",
        cookies(&r)
    );
    assert_eq!(agent_state(&f), centre::AgentState::LoggedOut);
    // Every session from before the logout is over, not only this browser's cookie.
    for old in [&jar, &other] {
        let (status, page) = console(&f, old).await;
        assert_ne!(status, StatusCode::OK, "{page}");
    }
    // Logging in again works.
    let (_, again) = console_login(&f, ADA_PASSWORD, "192.0.2.13").await;
    assert_eq!(console(&f, &again).await.0, StatusCode::OK);
}

#[tokio::test]
async fn console_shows_the_offered_email_then_done_and_wrap_up() {
    let f = agent_fixture().await;
    leave_email(&f).await;
    let (_, jar) = console_login(&f, ADA_PASSWORD, "192.0.2.11").await;
    press(&f, &jar, "ready", "").await;
    // The centre routes an email straight to Busy (the console is the agent's phone).
    assert!(matches!(agent_state(&f), centre::AgentState::Busy { .. }));
    let (_, page) = console(&f, &jar).await;
    for needle in [
        "Email connected",
        r#"<dd id="contact-subject" class="typed">Router keeps &#60;rebooting&#62;</dd>"#,
        "Every ten minutes\nsince the update.",
        "caller@example.org",
        "Support — English",
        r#"<button id="done" type="submit">"#,
    ] {
        assert!(
            page.contains(needle)
                || page.contains(&needle.replace("&#60;", "&lt;").replace("&#62;", "&gt;")),
            "{needle} missing:\n{page}"
        );
    }
    let caller = body(get(&f.app, &format!("/c/{}", f.id)).await).await;
    assert!(caller.contains("Connected to Ada Lovelace"), "{caller}");
    let r = press(&f, &jar, "done", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(matches!(agent_state(&f), centre::AgentState::WrapUp { .. }));
    let (_, page) = console(&f, &jar).await;
    assert!(page.contains("Wrap-up"), "{page}");
    assert!(page.contains(r#"<button id="ready-now" type="submit">"#));
    assert!(page.contains(r#"id="wrap-up-left" data-left="#));
    let r = press(&f, &jar, "ready_now", "").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(matches!(agent_state(&f), centre::AgentState::Ready { .. }));
}

#[tokio::test]
async fn console_forms_without_the_csrf_token_are_refused() {
    let f = agent_fixture().await;
    let (_, jar) = console_login(&f, ADA_PASSWORD, "192.0.2.12").await;
    for body_text in ["action=ready", "action=ready&csrf=00", "action=ready&csrf="] {
        let r = send(&f.app, form_post("/agent/console", &jar, body_text)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body_text}");
    }
    // Another site's form: refused by Origin before anything else.
    let mut r = form_post("/agent/console", &jar, "action=ready");
    r.headers_mut()
        .insert(header::ORIGIN, "http://evil.test".parse().expect("header"));
    assert_eq!(send(&f.app, r).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        agent_state(&f),
        centre::AgentState::NotReady {
            reason: "logged in".into()
        }
    );
}

fn api(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    if json_body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    b.body(Body::from(json_body.unwrap_or("").to_owned()))
        .expect("request")
}

async fn json_of(r: Response) -> serde_json::Value {
    serde_json::from_str(&body(r).await).expect("JSON")
}

#[tokio::test]
async fn agent_api_with_basic_auth_and_with_the_login_cookie() {
    let f = agent_fixture().await;
    // No credentials, wrong credentials: 401 problem+json, never a Basic challenge.
    for auth in [None, Some("Basic YWRhOndyb25n"), Some("Bearer x")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let r = send(&f.app, api("GET", "/api/agent/me", &headers, None)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "application/problem+json"
        );
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
    let basic = [("authorization", "Basic YWRhOmFkYS1zZWNyZXQtMQ==")]; // ada:ada-secret-1
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/state",
            &basic,
            Some(r#"{"state":"logged_in"}"#),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let me = json_of(r).await;
    assert_eq!(me["state"], "not_ready");
    assert_eq!(me["reason"], "logged in");
    assert_eq!(me["name"], "Ada Lovelace");
    assert_eq!(me["queues"][0]["waiting"], 1);
    // Ready with Basic: no CSRF needed; the parked caller is offered at once.
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/state",
            &basic,
            Some(r#"{"state":"ready"}"#),
        ),
    )
    .await;
    let me = json_of(r).await;
    assert_eq!(me["state"], "reserved", "{me}");
    assert_eq!(me["contact"]["id"], f.id.as_str());
    assert_eq!(me["contact"]["media"], "voice");
    // Done with nothing connected: 409.
    let r = send(&f.app, api("POST", "/api/agent/done", &basic, None)).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(json_of(r).await["type"], "/problems/agent-state");
    f.centre
        .offer_answered(centre::AgentId("ada".into()))
        .await
        .expect("answered");

    // Cookie login: a cookie on /api/agent and a CSRF token for changes.
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/login",
            &[],
            Some(&format!(r#"{{"agent":"ada","password":"{ADA_PASSWORD}"}}"#)),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = cookies(&r).pop().expect("cookie");
    assert!(set.contains("Path=/api/agent;"), "{set}");
    let jar = set.split(';').next().expect("pair").to_owned();
    let me = json_of(r).await;
    assert_eq!(me["state"], "busy");
    assert_eq!(me["contact"]["connected"], true);
    let csrf = me["csrf"].as_str().expect("csrf").to_owned();
    let r = send(
        &f.app,
        api("POST", "/api/agent/done", &[("cookie", &jar)], None),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "cookie without CSRF");
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/done",
            &[("cookie", &jar), ("x-csrf-token", &csrf)],
            None,
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["state"], "wrap_up");
    let r = send(
        &f.app,
        api("GET", "/api/agent/me", &[("cookie", &jar)], None),
    )
    .await;
    assert!(json_of(r).await["wrap_up_until"].is_u64());
    // Bad bodies.
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/state",
            &basic,
            Some(r#"{"state":"asleep"}"#),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/login",
            &[],
            Some(r#"{"agent":"ada","password":"nope"}"#),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/state",
            &basic,
            Some(r#"{"state":"logged_out"}"#),
        ),
    )
    .await;
    assert_eq!(json_of(r).await["state"], "logged_out");
}

#[tokio::test]
async fn metrics_expose_queues_and_agents() {
    let f = agent_fixture().await;
    let r = get(&f.app, "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, header::CONTENT_TYPE),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = body(r).await;
    for line in [
        "# TYPE holdline_queue_waiting gauge",
        "holdline_queue_waiting{queue=\"support\"} 1",
        "holdline_queue_waiting{queue=\"sales\"} 0",
        "holdline_queue_staffed{queue=\"support\"} 0",
        "holdline_queue_offered{queue=\"support\"} 0",
        "holdline_agents{state=\"logged_out\"} 1",
        "holdline_agents{state=\"ready\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("holdline_queue_longest_wait_seconds{queue=\"support\"} ")),
        "{text}"
    );
    // The centre's counters: the fixture's caller was admitted to support.
    for line in [
        "# TYPE holdline_contacts_admitted_total counter",
        "holdline_contacts_admitted_total{queue=\"support\"} 1",
        "holdline_contacts_admitted_total{queue=\"sales\"} 0",
        "holdline_contacts_ended_total{queue=\"support\",reason=\"abandoned\"} 0",
        "holdline_offers_total{outcome=\"answered\"} 0",
        "holdline_transfers_total{result=\"ok\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // After an end, the ended counter moves.
    f.centre
        .end(f.id.clone(), EndReason::Abandoned)
        .await
        .expect("ended");
    let text = body(get(&f.app, "/metrics").await).await;
    assert!(
        text.lines()
            .any(|l| l == "holdline_contacts_ended_total{queue=\"support\",reason=\"abandoned\"} 1"),
        "{text}"
    );
}

// --- issue 4: moves to another site, call-back attempts -------------------------------

/// The test config plus another site's queue, "Paris office".
fn config_with_paris() -> CentreConfig {
    let mut cfg = config();
    cfg.queues.push(QueueSpec {
        skillset: "Support — French".into(),
        default_handle_secs: 180,
        ..testkit::remote_queue(
            "paris",
            "Paris office",
            "sip:support@paris.example.com:5060",
        )
    });
    cfg
}

async fn paris_fixture() -> Fixture {
    let token = CancellationToken::new();
    let (centre, _thread) = centre::spawn(
        config_with_paris(),
        Box::new(MemoryStore::new()),
        token.clone(),
    )
    .expect("centre");
    let status = centre
        .admit(NewContact {
            queue: QueueId("support".into()),
            media: MediaType::Voice,
            caller: "sip:alice@example.com".into(),
            call_ref: "call-1".into(),
        })
        .await
        .expect("admitted");
    let app = router(WebState {
        centre: centre.clone(),
        secret: SECRET,
        limits: RateLimits::default(),
        shutdown: CancellationToken::new(),
        agents: Vec::new(),
        link_key: crate::web::link::LinkKey::random(),
        sip_address: String::new(),
        phones: None,
        zone: crate::web::zone::Zone::utc(),
        supervision: Default::default(),
        chat_idle_secs: 60,
    });
    Fixture {
        app,
        centre,
        id: status.id,
        _token: token,
    }
}

/// The status JSON, with the session cookie and CSRF token for commands.
async fn api_status(f: &Fixture) -> (String, serde_json::Value) {
    let r = get(&f.app, &format!("/api/contacts/{}", f.id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let c = cookie(&r);
    (c, serde_json::from_str(&body(r).await).expect("json"))
}

#[tokio::test]
async fn a_remote_queue_is_a_move_target_without_place_or_wait() {
    let f = paris_fixture().await;
    let (_, v) = api_status(&f).await;
    let targets = v["move_targets"].as_array().expect("targets");
    let paris = targets
        .iter()
        .find(|t| t["queue"] == "paris")
        .expect("paris offered");
    assert_eq!(paris["remote"], true);
    assert_eq!(paris["name"], "Paris office");
    let sales = targets
        .iter()
        .find(|t| t["queue"] == "sales")
        .expect("sales");
    assert_eq!(sales["remote"], false);
    // The new fields are always present.
    assert!(v["transferring"].is_null());
    assert!(v["notice"].is_null());
    assert_eq!(v["attempts"], serde_json::json!([]));
    assert!(v["next_attempt"].is_null());
    assert_eq!(v["display"]["notice"], "");

    let page = body(get(&f.app, &format!("/c/{}", f.id)).await).await;
    assert!(
        page.contains(r#"<option value="paris">Paris office (another site: no estimate from that office)</option>"#),
        "{page}"
    );
    // A remote queue's own line is not shown as a local queue on /metrics.
    let text = body(get(&f.app, "/metrics").await).await;
    assert!(!text.contains("queue=\"paris\""), "{text}");
}

#[tokio::test]
async fn a_move_to_another_site_confirms_transferring_then_a_failure_is_noticed() {
    let f = paris_fixture().await;
    let r = get(&f.app, &format!("/c/{}", f.id)).await;
    let c = cookie(&r);
    let page = body(r).await;
    let token = csrf::token(&SECRET, c.trim_start_matches("hl_session="), f.id.as_str());
    let version = field(&page, "version");
    let r = send(
        &f.app,
        form_post(
            &format!("/c/{}/actions", f.id),
            &c,
            &format!("csrf={token}&command_id=mv1&version={version}&action=move_queue&to=paris"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let done = get(&f.app, &header_of(&r, header::LOCATION)).await;
    assert_eq!(done.status(), StatusCode::OK);
    let page = body(done).await;
    assert!(
        page.contains("We are moving your call to Paris office. Stay on the line."),
        "{page}"
    );
    assert!(page.contains(r#"<dd id="state">Moving your call to Paris office…</dd>"#));
    // The place here is kept meanwhile, but no other move is offered.
    assert!(page.contains("You are 1st."));
    assert!(!page.contains(r#"<form id="move-form""#));

    // The other site was busy: the caller is told, keeps the place and may try again.
    f.centre
        .transfer_result(f.id.clone(), false, "busy".into())
        .await
        .expect("result");
    let page = body(get(&f.app, &format!("/c/{}", f.id)).await).await;
    assert!(
        page.contains(
            r#"<p id="centre-notice" class="notice big" role="alert">We could not move your call to Paris office (busy)."#
        ),
        "{page}"
    );
    assert!(page.contains("Waiting: please stay on the line."));
    assert!(page.contains(r#"<option value="paris">Paris office (another site: no estimate from that office)</option>"#));
    let (_, v) = api_status(&f).await;
    assert!(v["transferring"].is_null());
    assert!(
        v["notice"]
            .as_str()
            .is_some_and(|n| n.starts_with("We could not move your call to Paris office (busy)")),
        "{v}"
    );
    assert_eq!(v["display"]["notice"], v["notice"]);
}

#[tokio::test]
async fn the_api_move_to_another_site_returns_the_transferring_confirmation() {
    let f = paris_fixture().await;
    let (c, v) = api_status(&f).await;
    let r = send(
        &f.app,
        Request::post(format!("/api/contacts/{}/actions", f.id))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &c)
            .header("x-csrf-token", v["csrf"].as_str().expect("csrf"))
            .body(Body::from(format!(
                r#"{{"command_id":"mv-api","version":{},"action":"move_queue","to":"paris"}}"#,
                v["version"]
            )))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
    assert_eq!(v["confirmation"]["done"], "transferring");
    assert_eq!(v["confirmation"]["to"], "paris");
    assert_eq!(v["confirmation"]["name"], "Paris office");
    assert_eq!(
        v["confirmation"]["text"],
        "We are moving your call to Paris office. Stay on the line."
    );
    assert_eq!(v["status"]["transferring"], "Paris office");
    assert_eq!(
        v["status"]["display"]["state"],
        "Moving your call to Paris office…"
    );
    // The other site took the call: the contact ends as moved.
    f.centre
        .transfer_result(f.id.clone(), true, String::new())
        .await
        .expect("result");
    let page = body(get(&f.app, &format!("/c/{}", f.id)).await).await;
    assert!(
        page.contains(": your call was moved to another office.</dd>"),
        "{page}"
    );
    let text = body(get(&f.app, "/metrics").await).await;
    assert!(
        text.contains("holdline_transfers_total{result=\"ok\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "holdline_contacts_ended_total{queue=\"support\",reason=\"transferred\"} 1\n"
        ),
        "{text}"
    );
}

/// Books a call-back on the caller's own number and makes Ada ready, so it is offered
/// to her (Reserved: the call layer dials it).
async fn callback_offered_to_ada(f: &Fixture) {
    f.centre
        .command(centre::CommandRequest {
            id: centre::CommandId("cb-1".into()),
            contact: f.id.clone(),
            expected_version: None,
            command: centre::Command::Callback {
                number: String::new(),
                window: None,
            },
        })
        .await
        .expect("call-back booked");
    let ada = centre::AgentId("ada".into());
    f.centre.agent_login(ada.clone()).await.expect("login");
    f.centre.agent_ready(ada).await.expect("ready");
    assert!(
        matches!(agent_state(f), centre::AgentState::Reserved { .. }),
        "{:?}",
        agent_state(f)
    );
}

#[tokio::test]
async fn call_back_attempts_and_the_next_one_show_on_the_caller_page() {
    let f = agent_fixture().await;
    callback_offered_to_ada(&f).await;
    f.centre
        .callback_attempt(
            centre::AgentId("ada".into()),
            centre::AttemptOutcome::Failed("busy".into()),
        )
        .await
        .expect("attempt");
    let page = body(get(&f.app, &format!("/c/{}", f.id)).await).await;
    assert!(page.contains("<h3>Call-back attempts</h3>"), "{page}");
    assert!(page.contains(" UTC — busy</li>"), "{page}");
    assert!(
        page.contains(r#"<p id="next-attempt">Next attempt at "#),
        "{page}"
    );
    assert!(!page.contains(r#"<div id="callback-attempts" hidden>"#));
    let (_, v) = api_status(&f).await;
    assert_eq!(v["attempts"][0]["outcome"], "busy");
    assert!(v["next_attempt"].is_u64(), "{v}");
    assert!(
        v["display"]["attempts"][0]
            .as_str()
            .is_some_and(|a| a.ends_with(" UTC — busy")),
        "{v}"
    );
    let text = body(get(&f.app, "/metrics").await).await;
    assert!(
        text.contains("holdline_callback_attempts_total{outcome=\"busy\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn the_console_card_shows_earlier_attempts_of_a_call_back() {
    // No wait between attempts: the failed call-back is offered to Ada again at once.
    let mut cfg = config();
    cfg.callback_retry_secs = 0;
    let f = agent_fixture_with(cfg).await;
    callback_offered_to_ada(&f).await;
    let (_, jar) = console_login(&f, ADA_PASSWORD, "192.0.2.31").await;
    let (_, page) = console(&f, &jar).await;
    assert!(page.contains("Call-back offered to you"), "{page}");
    assert!(
        page.contains(r#"<dd id="contact-attempt" class="typed">1</dd>"#),
        "{page}"
    );
    assert!(!page.contains("contact-attempts"));
    f.centre
        .callback_attempt(
            centre::AgentId("ada".into()),
            centre::AttemptOutcome::Failed("no answer".into()),
        )
        .await
        .expect("attempt");
    assert!(matches!(
        agent_state(&f),
        centre::AgentState::Reserved { .. }
    ));
    let (_, page) = console(&f, &jar).await;
    assert!(
        page.contains(r#"<dd id="contact-attempt" class="typed">2</dd>"#),
        "{page}"
    );
    assert!(page.contains(r#"<ul id="contact-attempts"><li>"#), "{page}");
    assert!(page.contains(" UTC — no answer</li>"), "{page}");
    // The attempt Ada holds was due already: no "next attempt" line meanwhile.
    assert!(!page.contains("contact-next-attempt"), "{page}");
}

#[tokio::test]
async fn the_api_answers_as_its_document_says() {
    let f = agent_fixture().await;
    // Unknown routes under /api/ are problem+json 404s; elsewhere the HTML page.
    for path in ["/api/nope", "/api/contacts", "/api/agent/me/extra", "/api"] {
        let r = send(&f.app, api("GET", path, &[], None)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "application/problem+json",
            "{path}"
        );
        let v = json_of(r).await;
        assert_eq!(v["status"], 404, "{path}: {v}");
    }
    let r = send(&f.app, api("GET", "/nope", &[], None)).await;
    assert!(header_of(&r, header::CONTENT_TYPE).starts_with("text/html"));
    // An email without its subject: 422 naming the field.
    let r = get(&f.app, &format!("/api/contacts/{}", f.id)).await;
    let c = cookie(&r);
    let v = json_of(r).await;
    let r = send(
        &f.app,
        Request::post(format!("/api/contacts/{}/actions", f.id))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &c)
            .header("x-csrf-token", v["csrf"].as_str().expect("csrf"))
            .body(Body::from(
                r#"{"command_id":"em1","action":"email","message":"Hello","reply_to":"a@example.org"}"#,
            ))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v = json_of(r).await;
    assert_eq!(v["field"], "subject", "{v}");
    // `reason: null` is refused (a string or nothing), naming the field.
    let basic = [("authorization", "Basic YWRhOmFkYS1zZWNyZXQtMQ==")]; // ada:ada-secret-1
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/state",
            &basic,
            Some(r#"{"state":"logged_in"}"#),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(
        &f.app,
        api(
            "POST",
            "/api/agent/state",
            &basic,
            Some(r#"{"state":"not_ready","reason":null}"#),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(r).await["field"], "reason");
    // A body missing the required `state`: 422 naming it, too.
    let r = send(&f.app, api("POST", "/api/agent/state", &basic, Some("{}"))).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(r).await["field"], "state");
}

#[test]
fn the_note_form_shows_the_saved_note_escaped_and_has_a_page_of_its_own() {
    let mut s = all_options(hand_status(1, 0));
    s.options.push(ActionKind::Note);
    s.note = Some("order <b>1234</b> & \"red\"".into());
    let page = rendered(&s, View::default());
    let form = page
        .split(r#"<form id="note-form""#)
        .nth(1)
        .expect("the note form");
    assert!(
        form.split('>')
            .next()
            .unwrap()
            .contains("data-js-form hidden")
    );
    assert!(
        page.contains("/c/") && page.contains("/form/note"),
        "no-JS link"
    );
    assert!(
        page.contains("order &#60;b&#62;1234&#60;/b&#62; &#38; &#34;red&#34;</textarea>"),
        "the saved note, escaped: {page}"
    );
    assert!(!page.contains("<b>1234</b>"));
    assert!(page.contains(r#"maxlength="500""#));
    // Alone on its page (no script needed), the note form is the one control.
    let only = rendered(
        &s,
        View {
            only: Some(ActionKind::Note),
            ..View::default()
        },
    );
    assert!(only.contains(r#"<form id="note-form" data-kind="note" method="post" action"#));
    assert!(!only.contains("data-js-form"));
    assert!(!only.contains(r#"id="email-form""#));
    // Without the option (offered to an agent), no form.
    s.options.retain(|k| *k != ActionKind::Note);
    assert!(!rendered(&s, View::default()).contains("note-form"));
}

#[test]
fn a_note_form_posts_a_note_command_bounded_in_characters() {
    let zone = crate::web::zone::Zone::utc();
    let form = |note: &str| forms::ActionForm {
        action: Some("note".into()),
        note: Some(note.into()),
        ..forms::ActionForm::default()
    };
    assert_eq!(
        forms::command_from_form(&form(" order 1234 "), &zone).expect("valid"),
        crate::centre::Command::Note {
            text: " order 1234 ".into()
        }
    );
    assert!(forms::command_from_form(&form(&"é".repeat(500)), &zone).is_ok());
    let e = forms::command_from_form(&form(&"é".repeat(501)), &zone).unwrap_err();
    assert_eq!(e.field, "note");
    assert!(e.message.contains("500"), "{}", e.message);
}

#[test]
fn a_dropped_caller_can_be_called_now_in_one_press_without_seeing_their_number() {
    let mut s = all_options(hand_status(1, 0));
    s.default_callback_number = Some("+15550100118".into());
    let waiting = rendered(&s, View::default());
    assert!(
        !waiting.contains("call-me-now"),
        "on the line: no call me now"
    );
    s.state = ContactState::Disconnected {
        since: Timestamp(0),
        until: Timestamp(900_000),
    };
    let page = rendered(&s, View::default());
    let form = page
        .split(r#"<form id="call-me-now-form""#)
        .nth(1)
        .expect("call me now")
        .split("</form>")
        .next()
        .unwrap();
    // A plain form (no script needed): a call-back to the calling number, now.
    assert!(!form.contains("hidden>"), "{form}");
    assert!(form.contains(r#"name="action" value="callback""#), "{form}");
    assert!(form.contains(r#"name="number" value="""#), "{form}");
    assert!(!form.contains("not_before"), "{form}");
    assert!(
        form.contains("0118") && !form.contains("5550100118"),
        "{form}"
    );
    assert!(form.contains(r#"<button id="call-me-now" type="submit">Call me now</button>"#));
    // Without a calling number to ring, the call-back form asks for one instead.
    s.default_callback_number = None;
    assert!(!rendered(&s, View::default()).contains("call-me-now"));
}
