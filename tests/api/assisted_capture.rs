//! Assisted orders (mode `assisted`, issue #16) at the API: the order
//! carries its one-time code, and `POST /v1/orders/{id}/capture` and
//! `/capture/cancel` refuse what they cannot do with a code and change
//! nothing. The calls side is played by the store's own writes (the daemon
//! runs no calls here), as `crate::calls::assisted` makes them.

use serde_json::{json, Value};
use voicepay::domain::{OrderStatus, ResultCode};
use voicepay::store::Transition;
use voicepay::store::{now_ms, Party, Store};
use voicepay_testkit::receiver::Receiver;
use voicepay_testkit::{on_both_stores, order_body, spawn_app, spawn_app_with, Db, TestApp};

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

/// `(id, event, data)` of each event of the order's stream, read to its
/// end (the order is final), resumed after `last` when given.
async fn stream(app: &TestApp, id: &str, last: Option<&str>) -> Vec<(String, String, Value)> {
    let mut req = app
        .http
        .get(app.url(&format!("/v1/orders/{id}/events")))
        .bearer_auth(&app.api_key);
    if let Some(last) = last {
        req = req.header("Last-Event-ID", last);
    }
    let body = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        req.send().await.unwrap().text().await.unwrap()
    })
    .await
    .expect("the stream of a final order ends");
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            let data = serde_json::from_str(&field("data:")?).ok()?;
            Some((field("id:")?, field("event:")?, data))
        })
        .collect()
}

/// Two progress reports, as the calls side writes them, then a result.
async fn captured_and_failed(store: &Store, id: &str) -> [Value; 2] {
    let steps = [
        json!({"step": "pin", "digits_entered": 4, "digits_expected": 6, "tries_left": 3}),
        json!({"step": "authorizing", "digits_entered": 0, "digits_expected": 0, "tries_left": 2}),
    ];
    for p in &steps {
        store
            .record_capture_progress(id, &p.to_string(), now_ms())
            .await
            .unwrap();
    }
    let t = Transition {
        from: OrderStatus::InCall,
        to: OrderStatus::Failed,
        result: Some(ResultCode::CallerHungUp),
        detail: None,
    };
    assert!(store.transition(id, t, now_ms()).await.unwrap());
    steps
}

async fn progress_is_on_the_status_stream_and_resumes(app: TestApp) {
    let store = store(&app).await;
    let v = new_order(&app, "assisted").await;
    let id = v["id"].as_str().unwrap();
    in_bridge(&store, id, true).await;
    let steps = captured_and_failed(&store, id).await;
    let all = stream(&app, id, None).await;
    let names: Vec<&str> = all.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "pending",
            "in_call",
            "capture.progress",
            "capture.progress",
            "failed"
        ]
    );
    assert_eq!(all[2].2, steps[0]);
    assert_eq!(all[3].2, steps[1]);
    // Resumed after the first progress event: the rest, nothing twice.
    let rest = stream(&app, id, Some(&all[2].0)).await;
    let names: Vec<&str> = rest.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(names, ["capture.progress", "failed"]);
    assert_eq!(rest[0].0, all[3].0);
}

async fn progress_webhooks_go_only_to_orders_that_asked(db: Db) {
    let rx = Receiver::start().await;
    let Some(app) = spawn_app_with(db, |s| rx.allow(s)).await else {
        return;
    };
    let store = store(&app).await;
    let mut ids = Vec::new();
    for (n, wants) in [false, true].into_iter().enumerate() {
        let mut body = order_body(&format!("AW{n}"));
        body["mode"] = json!("assisted");
        body["notify_url"] = json!(rx.url);
        body["notify_progress"] = json!(wants);
        let v: Value = app.create_order(&body).await.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        in_bridge(&store, &id, true).await;
        captured_and_failed(&store, &id).await;
        ids.push(id);
    }
    let rows = |id: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT payload FROM webhook_outbox WHERE order_id = $1 \
                 AND event_type = 'capture.progress' ORDER BY created_at",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert!(rows(ids[0].clone()).await.is_empty(), "notify_progress off");
    let sent = rows(ids[1].clone()).await;
    assert_eq!(sent.len(), 2);
    let first: Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(first["type"], "capture.progress");
    assert_eq!(first["data"]["id"], ids[1].as_str());
    assert_eq!(
        first["progress"],
        json!({"step": "pin", "digits_entered": 4, "digits_expected": 6, "tries_left": 3})
    );
}

mod webhooks {
    use super::*;
    on_both_stores!(db: progress_webhooks_go_only_to_orders_that_asked);
}

mod stores {
    use super::*;
    on_both_stores!(
        spawn = spawn_app;
        progress_is_on_the_status_stream_and_resumes,
    );
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
