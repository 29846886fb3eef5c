//! Assisted orders (mode `assisted`, issue #16) at the API: the order
//! carries its one-time code, and `POST /v1/orders/{id}/capture` and
//! `/capture/cancel` refuse what they cannot do with a code and change
//! nothing. The calls side is played by the store's own writes (the daemon
//! runs no calls here), as `crate::calls::assisted` makes them.

use serde_json::{json, Value};
use voicepay::store::{now_ms, Party, Store};
use voicepay_testkit::{on_both_stores, order_body, spawn_app, TestApp};

async fn store(app: &TestApp) -> Store {
    Store::connect(&app.settings.database.url, 1, voicepay::views::webhook_body)
        .await
        .expect("store")
}

async fn new_order(app: &TestApp, mode: &str) -> Value {
    let mut body = order_body(&format!("A{:x}", rand::random::<u32>()));
    body["mode"] = json!(mode);
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn post(app: &TestApp, id: &str, what: &str, key: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(&format!("/v1/orders/{id}/{what}")))
        .bearer_auth(&app.api_key);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.expect("request sent")
}

/// The status and the error code of a refused request.
async fn refused(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

/// What a refused request must leave alone: the order's status, its audit
/// log and the assisted call's row.
async fn footprint(app: &TestApp, store: &Store, id: &str) -> (Value, usize, String) {
    let status = app.order_view(id).await["status"].clone();
    let log = store.events_for(id).await.unwrap().len();
    let row = format!("{:?}", store.assisted_call(id).await.unwrap());
    (status, log, row)
}

/// The calls side's writes when the cardholder's channel (and, with
/// `agent`, the agent's) is in the bridge: the cardholder claims the order.
async fn in_bridge(store: &Store, id: &str, agent: bool) {
    let now = now_ms();
    let claimed = store
        .claim_live_call(id, "node-a", "ch-1", "assisted call", now, now + 600_000)
        .await
        .unwrap();
    assert!(claimed.is_some(), "the cardholder claims the pending order");
    store
        .assisted_party(id, Party::Cardholder, Some("ch-1"), now)
        .await
        .unwrap();
    if agent {
        store
            .assisted_party(id, Party::Agent, Some("ag-1"), now)
            .await
            .unwrap();
    }
}

async fn an_assisted_order_carries_its_one_time_code(app: TestApp) {
    let v = new_order(&app, "assisted").await;
    assert_eq!(v["mode"], "assisted");
    let code = v["transfer_code"].as_str().expect("the one-time code");
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    assert!(v.get("order_code").is_none(), "{v:#}");
    let mut body = order_body("A-bad-mode");
    body["mode"] = json!("assist");
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 422);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("assisted"),
        "the error lists the modes: {text}"
    );
    assert_eq!(app.count("orders").await, 1);
}

async fn a_capture_on_an_order_that_is_not_assisted_changes_nothing(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "transfer").await;
    let id = v["id"].as_str().unwrap();
    let before = footprint(&app, &store, id).await;
    for what in ["capture", "capture/cancel"] {
        let (status, code) = refused(post(&app, id, what, Some("k-not-assisted")).await).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "order_not_assisted"),
            "{what}"
        );
    }
    assert_eq!(footprint(&app, &store, id).await, before);
    assert_eq!(app.count("idempotency_keys").await, 0, "no key was kept");
}

async fn a_capture_before_both_parties_are_in_the_bridge_changes_nothing(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "assisted").await;
    let id = v["id"].as_str().unwrap();
    // Nobody yet: the order is pending.
    let before = footprint(&app, &store, id).await;
    let (status, code) = refused(post(&app, id, "capture", None).await).await;
    assert_eq!((status, code.as_str()), (409, "capture_not_ready"));
    assert_eq!(footprint(&app, &store, id).await, before);
    // The cardholder alone.
    in_bridge(&store, id, false).await;
    let before = footprint(&app, &store, id).await;
    let (status, code) = refused(post(&app, id, "capture", Some("k-early")).await).await;
    assert_eq!((status, code.as_str()), (409, "capture_not_ready"));
    assert_eq!(footprint(&app, &store, id).await, before);
    let row = store.assisted_call(id).await.unwrap().unwrap();
    assert_eq!((row.capture.as_str(), row.captures), ("idle", 0));
}

async fn one_capture_runs_at_a_time_and_a_retried_key_replays(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "assisted").await;
    let id = v["id"].as_str().unwrap();
    in_bridge(&store, id, true).await;
    let res = post(&app, id, "capture", Some("cap-1")).await;
    assert_eq!(res.status(), 202);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first, json!({"order_id": id, "capture": "requested"}));
    // The same key again: the first answer, nothing started twice.
    let res = post(&app, id, "capture", Some("cap-1")).await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.json::<Value>().await.unwrap(), first);
    // The same key for another request is refused.
    let (status, code) = refused(post(&app, id, "capture/cancel", Some("cap-1")).await).await;
    assert_eq!((status, code.as_str()), (409, "idempotency_key_reused"));
    // A second capture while one is requested.
    let before = footprint(&app, &store, id).await;
    let (status, code) = refused(post(&app, id, "capture", Some("cap-2")).await).await;
    assert_eq!((status, code.as_str()), (409, "capture_in_progress"));
    assert_eq!(footprint(&app, &store, id).await, before);
    let row = store.assisted_call(id).await.unwrap().unwrap();
    assert_eq!((row.capture.as_str(), row.captures), ("requested", 1));
    // The call begins it; still only one.
    assert!(store.begin_capture(id, now_ms()).await.unwrap());
    let (status, code) = refused(post(&app, id, "capture", None).await).await;
    assert_eq!((status, code.as_str()), (409, "capture_in_progress"));
    // Cancelled, then the call ends it: a new one may start.
    let res = post(&app, id, "capture/cancel", None).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["capture"], "cancelling");
    store.end_capture(id, now_ms()).await.unwrap();
    assert_eq!(post(&app, id, "capture", None).await.status(), 202);
    let row = store.assisted_call(id).await.unwrap().unwrap();
    assert_eq!((row.capture.as_str(), row.captures), ("requested", 2));
}

async fn a_cancel_with_no_capture_running_changes_nothing(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "assisted").await;
    let id = v["id"].as_str().unwrap();
    in_bridge(&store, id, true).await;
    let before = footprint(&app, &store, id).await;
    let (status, code) = refused(post(&app, id, "capture/cancel", Some("c-1")).await).await;
    assert_eq!((status, code.as_str()), (409, "no_capture_running"));
    assert_eq!(footprint(&app, &store, id).await, before);
}

async fn a_capture_on_a_final_order_changes_nothing(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "assisted").await;
    let id = v["id"].as_str().unwrap();
    let cancel = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &app.api_key, &json!({}))
        .await;
    assert_eq!(cancel.status(), 200);
    let before = footprint(&app, &store, id).await;
    for what in ["capture", "capture/cancel"] {
        let (status, code) = refused(post(&app, id, what, None).await).await;
        assert_eq!((status, code.as_str()), (409, "order_final"), "{what}");
    }
    assert_eq!(footprint(&app, &store, id).await, before);
    assert!(store.assisted_call(id).await.unwrap().is_none());
}

async fn another_merchants_order_is_not_found(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "assisted").await;
    let id = v["id"].as_str().unwrap();
    in_bridge(&store, id, true).await;
    let (_, other_key) = app.another_merchant().await;
    let res = app
        .http
        .post(app.url(&format!("/v1/orders/{id}/capture")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let row = store.assisted_call(id).await.unwrap().unwrap();
    assert_eq!((row.capture.as_str(), row.captures), ("idle", 0));
}

async fn the_document_lists_the_capture_endpoints_and_codes(app: TestApp) {
    let doc = app.openapi().await;
    for path in ["/v1/orders/{id}/capture", "/v1/orders/{id}/capture/cancel"] {
        assert!(doc["paths"][path]["post"].is_object(), "{path}");
    }
    let codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
        .as_array()
        .expect("the code enum")
        .clone();
    for code in [
        "order_not_assisted",
        "capture_not_ready",
        "capture_in_progress",
        "no_capture_running",
        "order_final",
    ] {
        assert!(codes.contains(&json!(code)), "{code}");
    }
}

on_both_stores!(
    spawn = spawn_app;
    an_assisted_order_carries_its_one_time_code,
    a_capture_on_an_order_that_is_not_assisted_changes_nothing,
    a_capture_before_both_parties_are_in_the_bridge_changes_nothing,
    one_capture_runs_at_a_time_and_a_retried_key_replays,
    a_cancel_with_no_capture_running_changes_nothing,
    a_capture_on_a_final_order_changes_nothing,
    another_merchants_order_is_not_found,
    the_document_lists_the_capture_endpoints_and_codes,
);
