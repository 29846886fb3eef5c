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
///
/// `database` is `ok` or `down`; `ari` is `connected`, `disconnected` (503),
/// `not_running` (configured, the client not started yet) or
/// `not_configured` (no `ari.password`: an API-only daemon, calls are off
/// and callback orders wait; not a reason for 503).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready. `ari`: `connected`, `not_running` or `not_configured` (no `ari.password`: calls are off, callback orders wait until they expire)", body = Object, example = json!({"ready": true, "database": "ok", "ari": "connected"})),
    (status = 503, description = "A dependency is down: `database` is `down`, or `ari` is `disconnected`", body = Object, example = json!({"ready": false, "database": "ok", "ari": "disconnected"})),
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.store.ping().await;
    let ari = state.readiness.ari();
    let ready = db && ari != Some(false);
    let ari = match ari {
        Some(true) => "connected",
        Some(false) => "disconnected",
        None if !crate::calls::enabled(&state.settings) => "not_configured",
        None => "not_running",
    };
    let body = json!({
        "ready": ready,
        "database": if db { "ok" } else { "down" },
        "ari": ari,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
