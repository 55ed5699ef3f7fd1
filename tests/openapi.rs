//! `docs/openapi.yaml` describes exactly the routes the router serves under `/api/`.

use axum::body::Body;
use axum::http::{Method, Request, header};
use holdline::centre::{self, CentreConfig, QueueId, QueueSpec};
use holdline::store::MemoryStore;
use holdline::web::{self, RateLimits, WebState, api::API_ROUTES};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

fn documented() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
        .expect("docs/openapi.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    assert_eq!(doc["openapi"].as_str(), Some("3.1.0"));
    let paths = doc["paths"].as_mapping().expect("paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path").to_owned();
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method");
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&method) {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_api_route_is_documented_and_vice_versa() {
    let mut served: Vec<(String, String)> = API_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    assert_eq!(served, documented());
}

#[tokio::test]
async fn the_router_answers_every_documented_route_itself() {
    let token = CancellationToken::new();
    let (centre, _thread) = centre::spawn(
        CentreConfig {
            queues: vec![QueueSpec {
                id: QueueId("support".into()),
                name: "Support".into(),
                skillset: "Support — English".into(),
                default_handle_secs: 180,
                remote: None,
            }],
            keep_place_secs: 600,
            id_retention_secs: 86_400,
            max_live_contacts: 10,
            callback: holdline::centre::CallbackRules::default(),
            agents: Vec::new(),
            wrap_up_secs: 30,
            offer_timeout_secs: 20,
            callback_attempts: 3,
            callback_retry_secs: 300,
            dial_callbacks: true,
            queue_log: None,
            exit_keys: Default::default(),
        },
        Box::new(MemoryStore::new()),
        token.clone(),
    )
    .expect("centre");
    let app = web::router(WebState {
        centre,
        secret: [1; 32],
        limits: RateLimits::default(),
        shutdown: CancellationToken::new(),
        agents: Vec::new(),
        link_key: holdline::web::link::LinkKey::random(),
        sip_address: String::new(),
        phones: None,
        zone: holdline::web::zone::Zone::utc(),
        supervision: Default::default(),
        chat_idle_secs: 60,
    });
    let ask = |method: &str, path: &str| {
        let uri = path.replace("{id}", "000000000000");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let app = app.clone();
        async move {
            let r = app
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri(uri)
                        .body(Body::empty())
                        .expect("req"),
                )
                .await
                .expect("response");
            let content_type = r
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = http_body_util::BodyExt::collect(r.into_body())
                .await
                .expect("body")
                .to_bytes();
            let no_route = String::from_utf8_lossy(&body).contains("/problems/no-route");
            format!(
                "{content_type}{}",
                if no_route { " (no route)" } else { "" }
            )
        }
    };
    // A route of ours answers in problem+json (unknown number, no CSRF token); a path
    // under /api/ the router does not serve is a problem+json "no route", and any other
    // falls through to the HTML 404 page.
    for (method, path) in documented() {
        assert_eq!(
            ask(&method, &path).await,
            "application/problem+json",
            "{method} {path}"
        );
    }
    assert_eq!(
        ask("get", "/api/nothing/{id}").await,
        "application/problem+json (no route)"
    );
    assert!(ask("get", "/nothing/{id}").await.starts_with("text/html"));
    token.cancel();
}
