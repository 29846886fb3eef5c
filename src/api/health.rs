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
/// and callback orders wait; not a reason for 503). `bank` is
/// `{"kind": "stub"}`, or `{"kind": "iso8583", "link": <LinkStatus>}`:
/// 503 while the ISO 8583 acquirer link is not signed on. `draining` is
/// true (and the answer 503) from a SIGTERM until the node stops: it
/// finishes its calls in progress and takes no new ones
/// (`telephony.drain_secs`).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready. `ari`: `connected`, `not_running` or `not_configured` (no `ari.password`: calls are off, callback orders wait until they expire). `bank.kind`: `stub` or `iso8583`; with `iso8583`, `bank.link` is the acquirer link's state (`state`: `signed_on` with `since_ms`, `connecting` with `attempt` and `last_error`, or `stopped`)", body = Object, example = json!({"ready": true, "draining": false, "database": "ok", "ari": "connected", "bank": {"kind": "iso8583", "link": {"state": "signed_on", "since_ms": 1_764_547_200_000_i64}}})),
    (status = 503, description = "A dependency is down: `database` is `down`, `ari` is `disconnected`, or the ISO 8583 link is not signed on; or the node is stopping (`draining`: true, after SIGTERM it finishes its calls and takes no new ones)", body = Object, example = json!({"ready": false, "draining": false, "database": "ok", "ari": "connected", "bank": {"kind": "iso8583", "link": {"state": "connecting", "attempt": 3, "last_error": "connect to 10.0.0.5:8583: connection refused"}}})),
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = state.store.ping().await;
    let ari = state.readiness.ari();
    let link = state.link.as_ref().map(crate::bank::iso8583::Link::status);
    let bank = match &link {
        None => json!({"kind": "stub"}),
        Some(status) => json!({"kind": "iso8583", "link": status}),
    };
    let link_up = link.as_ref().is_none_or(|s| s.is_signed_on());
    let draining = state.readiness.draining();
    let ready = db && ari != Some(false) && link_up && !draining;
    let ari = match ari {
        Some(true) => "connected",
        Some(false) => "disconnected",
        None if !crate::calls::enabled(&state.settings) => "not_configured",
        None => "not_running",
    };
    let body = json!({
        "ready": ready,
        "draining": draining,
        "database": if db { "ok" } else { "down" },
        "ari": ari,
        "bank": bank,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
