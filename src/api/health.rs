//! Liveness and readiness probes for load balancers and orchestrators.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", content_type = "text/plain", body = String, example = "ok\n")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers (and, once the ARI client runs, Asterisk
/// is connected). 503 otherwise, so a load balancer stops sending orders.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", body = Object, example = json!({"ready": true, "database": "ok", "ari": "connected"})),
    (status = 503, description = "A dependency is down", body = Object, example = json!({"ready": false, "database": "ok", "ari": "disconnected"})),
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.store.ping().await;
    let ari = state.readiness.ari();
    let ready = db && ari != Some(false);
    let body = json!({
        "ready": ready,
        "database": if db { "ok" } else { "down" },
        "ari": match ari { None => "not_running", Some(true) => "connected", Some(false) => "disconnected" },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
