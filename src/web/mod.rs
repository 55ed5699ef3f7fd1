//! The web server: pages and the JSON API keyed on the contact number.
//!
//! Owns HTTP routing only; it reads the centre's snapshots and sends commands through
//! `CentreHandle`. Must not import `sip` or `media`. The caller pages arrive with the
//! caller-page issue; until then it serves the operator's health check.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::centre::CentreHandle;

#[derive(Clone)]
pub struct WebState {
    pub centre: CentreHandle,
}

/// The whole web surface as a value, so tests can serve it on any listener.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(Arc::new(state))
}

/// Liveness plus the figures an operator checks first: contacts waiting per queue.
async fn healthz(State(state): State<Arc<WebState>>) -> Json<serde_json::Value> {
    let snapshot = state.centre.snapshots().borrow().clone();
    let queues: Vec<_> = snapshot
        .queues
        .iter()
        .map(
            |q| json!({ "id": q.id.0, "name": q.name, "waiting": q.waiting, "staffed": q.staffed }),
        )
        .collect();
    Json(json!({ "status": "ok", "queues": queues }))
}
